"""A user's own trained classifier (`evaluate.deployed`): loaded without running its code, checked against its
contract, scored like the trained classifiers.

Two file formats, told apart by content, not by name:
  .safetensors  the weights of a torchvision architecture (`architecture`, e.g. resnet18) with `outputs` outputs;
                for one input channel the network's first 3-channel convolution is made 1-channel, as medsr's own
                classifiers are (`medsr.classifier.model.one_channel_stem`); loaded strictly (every key, every shape).
  .pt2          a `torch.export.save` archive (an ExportedProgram: graph and weights, no Python code). Its weights and
                constants may be stored as pickles, which `torch.export.load` would unpickle with code execution;
                such an archive is refused, and the archive is loaded with `torch.load` held to weights_only.
A plain pickle or a `torch.save` file (a zip holding data.pkl) is refused: unpickling runs arbitrary code.

The contract (medsr.core.parameters.DeployedParams): images in [0, 1] of `image_size` x `image_size`, `channels` (the
grey image repeated), normalised (x - mean) / std per channel; `outputs` outputs, `unhealthy_index` the unhealthy class.
The score is the softmax probability of the unhealthy output (one output: its sigmoid). `load` probes the network
with a batch of the contract's shape before any image is read: a network that refuses it, gives another number of
outputs, or non-finite values is a one-line error naming the file.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.models
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from medsr.classifier.model import one_channel_stem
from medsr.core.errors import MedsrError
from medsr.core.parameters import DeployedParams

SAFETENSORS, EXPORTED = "safetensors", "pt2"
FORMATS = {".safetensors": SAFETENSORS, ".pt2": EXPORTED}  # the suffix a contract's file must carry
PICKLE_REFUSED = "a pickle payload is refused (unpickling runs arbitrary code)"
PROBE_BATCH = 2


def file_format(path: Path) -> str:
    """SAFETENSORS or EXPORTED from the file's content (and suffix); a pickle, a torch.save zip or anything else
    is a MedsrError naming the file."""
    if not path.is_file():
        raise MedsrError(f"{path}: evaluate.deployed.file: no such file")
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q", b"cc"):
        raise MedsrError(f"{path}: {PICKLE_REFUSED}; save the weights with safetensors or the model with "
                         f"torch.export.save (.pt2)")
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if any(n.endswith(".pkl") for n in names):
            raise MedsrError(f"{path}: a torch.save file: {PICKLE_REFUSED}; export it with torch.export.save (.pt2)")
        if not any(n.endswith("archive_format") for n in names):
            raise MedsrError(f"{path}: a zip archive but not a torch.export archive (.pt2)")
        return EXPORTED
    if len(head) >= 9 and head[8:9] == b"{":  # safetensors: 8-byte little-endian header length, then JSON
        return SAFETENSORS
    raise MedsrError(f"{path}: not a model file: neither safetensors nor a torch.export archive (.pt2)")


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """`torch.load` restricted to tensors and plain containers while a .pt2 archive is read."""
    original = torch.load

    def weights_only(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = weights_only
    try:
        yield
    finally:
        torch.load = original


def _pickled_payloads(path: Path) -> list[str]:
    """The weights and constants a .pt2 archive stores as pickles (its payload configs' use_pickle)."""
    found = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(("model_weights_config.json", "model_constants_config.json")):
                config = json.loads(archive.read(name)).get("config", {})
                found += [key for key, entry in config.items() if entry.get("use_pickle")]
    return found


def _static_batch(program) -> int | None:
    """The batch size an ExportedProgram was exported with when its first input's batch dimension is static."""
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shape = getattr(node.meta.get("val"), "shape", None)
            return shape[0] if shape and isinstance(shape[0], int) else None
    return None


def _load_exported(path: Path) -> tuple[nn.Module, int | None]:
    pickled = _pickled_payloads(path)
    if pickled:
        raise MedsrError(f"{path}: {PICKLE_REFUSED} ({pickled[0]} is stored as a pickle)")
    try:
        with _weights_only_loads():
            program = torch.export.load(str(path))
    except pickle.UnpicklingError as err:
        raise MedsrError(f"{path}: {PICKLE_REFUSED} ({str(err).splitlines()[0]})") from None
    except Exception as err:  # noqa: BLE001 -- any failure to read the archive is the file's
        raise MedsrError(f"{path}: cannot load the torch.export archive ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return program.module(), _static_batch(program)


def _load_weights(path: Path, contract: DeployedParams) -> nn.Module:
    builder = getattr(torchvision.models, contract.architecture, None) if contract.architecture else None
    if not callable(builder) or contract.architecture not in torchvision.models.list_models(torchvision.models):
        raise MedsrError(f"{path}: evaluate.deployed.architecture: {contract.architecture!r} is not a "
                         f"torchvision.models architecture")
    try:
        state_dict = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise MedsrError(f"{path}: cannot read the safetensors weights ({err})") from None
    model = builder(weights=None, num_classes=contract.outputs)
    if contract.channels == 1:
        try:
            model = one_channel_stem(model)
        except AssertionError as err:
            raise MedsrError(f"{path}: {contract.architecture}: {err} (evaluate.deployed.channels: 1)") from None
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise MedsrError(f"{path}: the weights do not fit {contract.architecture} with {contract.channels} input "
                         f"channel(s) and {contract.outputs} outputs ({detail})") from None
    return model


@dataclass
class DeployedClassifier:
    """A loaded deployed classifier: `score` maps images N x H x W in [0, 1] to P(unhealthy)."""

    path: Path
    format: str
    contract: DeployedParams
    network: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    fixed_batch: int | None = None  # an exported network's static batch size (None: any)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """N x H x W in [0, 1] -> N x C x H x W, normalised by the contract."""
        c = self.contract
        x = images[:, None].expand(-1, c.channels, -1, -1).to(torch.float32)
        mean = torch.tensor(c.mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std = torch.tensor(c.std, dtype=torch.float32).reshape(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The network's outputs for N images; a network exported with a static batch size gets batches of exactly
        that size (the last one padded with copies of its last image, whose outputs are dropped)."""
        n, step = images.shape[0], self.fixed_batch or images.shape[0]
        outs = []
        for start in range(0, n, max(step, 1)):
            batch = images[start:start + step]
            if self.fixed_batch and batch.shape[0] < step:
                batch = torch.cat([batch, batch[-1:].expand(step - batch.shape[0], -1, -1)])
            with torch.inference_mode():
                out = self.network(self.inputs(batch).to(self.device))
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor):
                raise MedsrError(f"{self.path}: the network returns {type(out).__name__}, not a tensor of outputs")
            outs.append(out.float().cpu()[:min(step, n - start)])
        return torch.cat(outs)

    def score(self, images: np.ndarray, batch_size: int = 64, what: str = "") -> np.ndarray:
        """P(unhealthy) of each image; a non-finite output is a one-line error naming the file."""
        c = self.contract
        scores = []
        for start in range(0, len(images), batch_size):
            logits = self.logits(torch.from_numpy(np.asarray(images[start:start + batch_size], dtype=np.float32)))
            self.check_outputs(logits, what)
            if c.outputs == 1:
                scores.append(torch.sigmoid(logits[:, 0]))
            else:
                scores.append(torch.softmax(logits, dim=1)[:, c.unhealthy_index])
        return torch.cat(scores).numpy().astype(np.float64) if scores else np.zeros(0)

    def check_outputs(self, logits: torch.Tensor, what: str = "") -> None:
        where = f" on {what}" if what else ""
        if logits.ndim != 2 or logits.shape[1] != self.contract.outputs:
            raise MedsrError(f"{self.path}: the network gives outputs of shape {tuple(logits.shape)}{where}; "
                             f"evaluate.deployed.outputs says N x {self.contract.outputs}")
        if not torch.isfinite(logits).all():
            raise MedsrError(f"{self.path}: the network gives NaN or infinite outputs{where}")


def load(contract: DeployedParams, path: Path | None = None, device: torch.device | None = None
         ) -> DeployedClassifier:
    """The deployed classifier of `contract` (its file, or `path`), probed with a batch of the contract's shape."""
    path = Path(path or contract.file)
    kind = file_format(path)
    expected = FORMATS.get(path.suffix)
    if expected != kind:
        raise MedsrError(f"{path}: a {kind} file; evaluate.deployed.file must end in "
                         f"{next(s for s, f in FORMATS.items() if f == kind)}")
    network, fixed_batch = _load_exported(path) if kind == EXPORTED else (_load_weights(path, contract), None)
    device = device or torch.device("cpu")
    if isinstance(network, nn.Module):
        network = network.to(device)
        if kind == SAFETENSORS:
            network.eval()
    classifier = DeployedClassifier(path, kind, contract, network, device, fixed_batch)
    probe = torch.full((PROBE_BATCH, contract.image_size, contract.image_size), 0.5)
    try:
        logits = classifier.logits(probe)
    except MedsrError:
        raise
    except Exception as err:  # noqa: BLE001 -- the user's network refusing the contract's input
        shape = (PROBE_BATCH, contract.channels, contract.image_size, contract.image_size)
        raise MedsrError(f"{path}: the network does not accept inputs of shape {shape} (evaluate.deployed "
                         f"image_size/channels): {type(err).__name__}: {' '.join(str(err).split())[:200]}") from None
    classifier.check_outputs(logits, "a probe batch")
    return classifier
