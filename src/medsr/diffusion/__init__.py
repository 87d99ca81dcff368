"""The diffusion model: noise schedule (`schedule`), denoiser U-Net (`unet`), samplers (`samplers`), EMA (`ema`)."""
