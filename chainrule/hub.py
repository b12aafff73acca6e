"""``torch.hub``'s cache and downloads, without pickle.

``get_dir``/``set_dir`` name the same cache folder as torch (``$TORCH_HOME/hub``, by default
``~/.cache/torch/hub``), so files torch downloaded are found. ``load_state_dict_from_url`` reads
``<hub dir>/checkpoints/<file name>`` when it is there and downloads it otherwise; the file is
read by ``cr.load``, which takes safetensors files (and chainrule's own, also safetensors) and
refuses pickles (most ``.pth`` files on the web are pickles: convert them to safetensors once,
with torch, and put the result in the cache). ``hub.load`` / ``list`` / ``help`` would run a
repository's ``hubconf.py``: refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from urllib.parse import urlparse

__all__ = ["get_dir", "set_dir", "load_state_dict_from_url", "download_url_to_file", "load",
           "list", "help", "HASH_REGEX"]

ENV_TORCH_HOME = "TORCH_HOME"
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
DEFAULT_CACHE_DIR = "~/.cache"
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
READ_DATA_CHUNK = 128 * 1024

_hub_dir: list = [None]


def _torch_home() -> str:
    return os.path.expanduser(os.getenv(ENV_TORCH_HOME, os.path.join(
        os.getenv(ENV_XDG_CACHE_HOME, DEFAULT_CACHE_DIR), "torch")))


def get_dir() -> str:
    """The hub cache folder: set by :func:`set_dir`, else ``$TORCH_HOME/hub``."""
    if _hub_dir[0] is not None:
        return _hub_dir[0]
    return os.path.join(_torch_home(), "hub")


def set_dir(d: str | os.PathLike) -> None:
    _hub_dir[0] = os.path.expanduser(os.fspath(d))


def download_url_to_file(url: str, dst: str, hash_prefix: str | None = None,
                         progress: bool = True) -> None:
    """Copy ``url`` to ``dst`` (through a temporary file beside it, renamed when complete);
    with ``hash_prefix``, the file's SHA-256 must start with it. A failed download raises
    ``OSError`` naming the URL and where the file would go."""
    from urllib.request import urlopen

    dst = os.path.expanduser(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = tempfile.NamedTemporaryFile(delete=False, dir=folder, prefix=".download-")
    try:
        sha = hashlib.sha256()
        try:
            with urlopen(url) as src:  # noqa: S310  (the program's own URL, as torch does)
                while chunk := src.read(READ_DATA_CHUNK):
                    tmp.write(chunk)
                    sha.update(chunk)
        except OSError as e:
            raise OSError(f"torch.hub: could not download {url} ({e}); without network access, "
                          f"put the file at {dst}") from e
        tmp.close()
        if hash_prefix is not None and not sha.hexdigest().startswith(hash_prefix):
            raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got '
                               f'"{sha.hexdigest()}")')
        shutil.move(tmp.name, dst)
    finally:
        tmp.close()
        if os.path.exists(tmp.name):
            os.remove(tmp.name)


def load_state_dict_from_url(url: str, model_dir: str | None = None, map_location=None,
                             progress: bool = True, check_hash: bool = False,
                             file_name: str | None = None, weights_only: bool = False):
    """The state dict at ``url``: from the cache (``model_dir``, default
    ``<hub dir>/checkpoints``) when the file is there, else downloaded into it first; read with
    ``cr.load`` (safetensors only: a pickled ``.pth`` is refused with its reason)."""
    from chainrule.serialization import load as _load

    if model_dir is None:
        model_dir = os.path.join(get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    filename = file_name or os.path.basename(urlparse(url).path)
    if not filename:
        raise ValueError(f"load_state_dict_from_url: cannot tell a file name from {url!r}; "
                         "pass file_name=")
    cached = os.path.join(model_dir, filename)
    if not os.path.exists(cached):
        match = HASH_REGEX.search(filename) if check_hash else None
        download_url_to_file(url, cached, match.group(1) if match else None, progress)
    return _load(cached, map_location=map_location)


def load(repo_or_dir, model, *args, source: str = "github", trust_repo=None,
         force_reload: bool = False, verbose: bool = True, skip_validation: bool = False,
         **kwargs):
    raise NotImplementedError(
        "torch.hub.load: chainrule does not run a repository's hubconf.py (its models and "
        "pickled weights are PyTorch's); build the model in Python and load safetensors weights "
        "with torch.hub.load_state_dict_from_url or cr.load")


def list(github, force_reload: bool = False, skip_validation: bool = False,  # noqa: A001
         trust_repo=None, verbose: bool = True):
    raise NotImplementedError("torch.hub.list: chainrule does not run hubconf.py files")


def help(github, model, force_reload: bool = False, skip_validation: bool = False,  # noqa: A001
         trust_repo=None):
    raise NotImplementedError("torch.hub.help: chainrule does not run hubconf.py files")
