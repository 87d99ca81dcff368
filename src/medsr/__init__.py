"""medsr: class-guided diffusion super-resolution of medical images, and an honest test of whether
it lowers a diagnostic classifier's false negatives."""

__version__ = "0.1.0"
