"""``SummaryWriter``: TensorBoard event files, as ``torch.utils.tensorboard.SummaryWriter``.

The records (scalars, histograms, text, images, hyperparameters) are TensorBoard's own protocol
buffers, written through the ``tensorboard`` package's ``EventFileWriter`` (an optional extra:
``pip install chainrule[tensorboard]``), so ``tensorboard --logdir runs`` reads them.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime

import numpy as np

__all__ = ["SummaryWriter"]


def _pb():
    """TensorBoard's protocol buffer modules and file writer (imported on first use)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    return event_pb2, summary_pb2, EventFileWriter


def _numpy(value) -> np.ndarray:
    """A NumPy array from a chainrule Tensor (detached, on the CPU), NumPy array or number."""
    from chainrule.tensor import Tensor

    if isinstance(value, Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def _scalar(value) -> float:
    arr = _numpy(value)
    if arr.size != 1:
        raise ValueError(f"add_scalar: scalar_value must hold one number, got shape {arr.shape}")
    return float(arr.reshape(()))


def _tensorflow_bins() -> np.ndarray:
    """TensorFlow's default histogram edges: +-1e-12 growing by 10% up to 1e20, and 0."""
    pos = 1e-12 * 1.1 ** np.arange(int(np.ceil(np.log(1e32) / np.log(1.1))))
    pos = pos[pos < 1e20]
    return np.concatenate([-pos[::-1], [0.0], pos])


def _histogram_proto(summary_pb2, values: np.ndarray, bins, max_bins=None):
    values = values.astype(np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("add_histogram: the input has no element")
    edges = _tensorflow_bins() if isinstance(bins, str) and bins == "tensorflow" else bins
    counts, limits = np.histogram(values, bins=edges)
    if max_bins is not None and counts.size > max_bins:
        group = -(-counts.size // max_bins)
        pad = (-counts.size) % group
        counts = np.pad(counts, (0, pad)).reshape(-1, group).sum(axis=1)
        limits = np.concatenate([limits[:-1:group], limits[-1:]])
    nonzero = np.flatnonzero(counts)
    if nonzero.size:  # keep the filled range and one empty bucket either side, as TensorBoard
        start, end = max(nonzero[0] - 1, 0), min(nonzero[-1] + 2, counts.size)
        counts, limits = counts[start:end], limits[start:end + 1]
    return summary_pb2.HistogramProto(
        min=float(values.min()), max=float(values.max()), num=int(values.size),
        sum=float(values.sum()), sum_squares=float(np.dot(values, values)),
        bucket_limit=limits[1:].tolist(), bucket=counts.astype(np.float64).tolist())


def _to_hwc(img: np.ndarray, dataformats: str) -> np.ndarray:
    fmt = dataformats.upper()
    if len(fmt) != img.ndim or sorted(fmt) != sorted(set(fmt)) or not set(fmt) <= set("HWC"):
        raise ValueError(f"add_image: dataformats {dataformats!r} does not fit an image of shape "
                         f"{img.shape}")
    if "C" not in fmt:
        img, fmt = img[..., None], fmt + "C"
    img = np.transpose(img, [fmt.index(c) for c in "HWC"])
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.dtype != np.uint8:  # floats in [0, 1], as torch
        img = (np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return img


def _png(img: np.ndarray) -> bytes:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("add_image needs Pillow to encode PNG (pip install pillow)") from None
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class SummaryWriter:
    """Write TensorBoard event files to ``log_dir`` (default ``runs/<date>_<host><comment>``).

    ``add_scalar``, ``add_scalars``, ``add_histogram``, ``add_text``, ``add_image(s)``,
    ``add_hparams``, ``flush``, ``close``; a context manager. Values may be chainrule tensors,
    NumPy arrays or Python numbers.
    """

    def __init__(self, log_dir: str | None = None, comment: str = "", purge_step=None,
                 max_queue: int = 10, flush_secs: int = 120, filename_suffix: str = "") -> None:
        if not log_dir:
            stamp = datetime.now().strftime("%b%d_%H-%M-%S")
            log_dir = os.path.join("runs", f"{stamp}_{socket.gethostname()}{comment}")
        self.log_dir = str(log_dir)
        self.purge_step = purge_step
        self.max_queue = max_queue
        self.flush_secs = flush_secs
        self.filename_suffix = filename_suffix
        self._writers: dict[str, object] = {}
        self._file_writer = self._writer(self.log_dir)
        if purge_step is not None:
            event_pb2 = _pb()[0]
            self._file_writer.add_event(event_pb2.Event(
                step=int(purge_step), file_version="brain.Event:2"))
            self._file_writer.add_event(event_pb2.Event(
                step=int(purge_step),
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def _writer(self, log_dir: str):
        if log_dir not in self._writers:
            self._writers[log_dir] = _pb()[2](log_dir, self.max_queue, self.flush_secs,
                                              self.filename_suffix)
        return self._writers[log_dir]

    def get_logdir(self) -> str:
        return self.log_dir

    def _add(self, summary, global_step=None, walltime=None, log_dir: str | None = None) -> None:
        event_pb2 = _pb()[0]
        event = event_pb2.Event(summary=summary,
                                wall_time=time.time() if walltime is None else float(walltime))
        if global_step is not None:
            event.step = int(global_step)
        self._writer(log_dir or self.log_dir).add_event(event)

    def add_scalar(self, tag: str, scalar_value, global_step=None, walltime=None,
                   new_style: bool = False, double_precision: bool = False) -> None:
        """One point of the curve ``tag`` at ``global_step``."""
        summary_pb2 = _pb()[1]
        value = _scalar(scalar_value)
        if new_style:
            from tensorboard.compat.proto import tensor_pb2, types_pb2

            tensor = tensor_pb2.TensorProto(
                dtype=types_pb2.DT_DOUBLE if double_precision else types_pb2.DT_FLOAT,
                **({"double_val": [value]} if double_precision else {"float_val": [value]}))
            meta = summary_pb2.SummaryMetadata(
                plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
            val = summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=meta)
        else:
            val = summary_pb2.Summary.Value(tag=tag, simple_value=value)
        self._add(summary_pb2.Summary(value=[val]), global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None,
                    walltime=None) -> None:
        """Several curves in one chart: each key goes to ``log_dir/<main_tag>_<key>``."""
        summary_pb2 = _pb()[1]
        for key, value in tag_scalar_dict.items():
            sub = os.path.join(self.log_dir, f"{main_tag.replace('/', '_')}_{key}")
            val = summary_pb2.Summary.Value(tag=main_tag, simple_value=_scalar(value))
            self._add(summary_pb2.Summary(value=[val]), global_step, walltime, log_dir=sub)

    def add_histogram(self, tag: str, values, global_step=None, bins="tensorflow",
                      walltime=None, max_bins=None) -> None:
        """The distribution of ``values`` (``bins``: ``"tensorflow"``, a count or NumPy's names)."""
        summary_pb2 = _pb()[1]
        histo = _histogram_proto(summary_pb2, _numpy(values), bins, max_bins)
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, histo=histo)]),
                  global_step, walltime)

    def add_text(self, tag: str, text_string: str, global_step=None, walltime=None) -> None:
        """Markdown text shown in TensorBoard's Text tab."""
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

        summary_pb2 = _pb()[1]
        meta = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, string_val=[str(text_string).encode("utf-8")],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
        val = summary_pb2.Summary.Value(tag=f"{tag}/text_summary", metadata=meta, tensor=tensor)
        self._add(summary_pb2.Summary(value=[val]), global_step, walltime)

    def add_image(self, tag: str, img_tensor, global_step=None, walltime=None,
                  dataformats: str = "CHW") -> None:
        """One image (floats in [0, 1] or uint8), encoded as PNG (needs Pillow)."""
        summary_pb2 = _pb()[1]
        img = _to_hwc(_numpy(img_tensor), dataformats)
        image = summary_pb2.Summary.Image(height=img.shape[0], width=img.shape[1],
                                          colorspace=img.shape[2], encoded_image_string=_png(img))
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=image)]),
                  global_step, walltime)

    def add_images(self, tag: str, img_tensor, global_step=None, walltime=None,
                   dataformats: str = "NCHW") -> None:
        """A batch of images tiled into one grid (up to 8 per row)."""
        imgs = _numpy(img_tensor)
        fmt = dataformats.upper()
        if "N" not in fmt or imgs.ndim != len(fmt):
            raise ValueError(f"add_images: dataformats {dataformats!r} does not fit a batch of "
                             f"shape {imgs.shape}")
        imgs = np.stack([_to_hwc(im, fmt.replace("N", "")) for im in np.moveaxis(
            imgs, fmt.index("N"), 0)])
        n, h, w, c = imgs.shape
        cols = min(n, 8)
        rows = -(-n // cols)
        grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
        for i in range(n):
            r, q = divmod(i, cols)
            grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = imgs[i]
        self.add_image(tag, grid, global_step, walltime, dataformats="HWC")

    def add_hparams(self, hparam_dict: dict, metric_dict: dict, hparam_domain_discrete=None,
                    run_name: str | None = None, global_step=None) -> None:
        """Hyperparameters and their metrics for TensorBoard's HParams tab (a sub-run)."""
        from tensorboard.plugins.hparams import summary_v2

        if not isinstance(hparam_dict, dict) or not isinstance(metric_dict, dict):
            raise TypeError("hparam_dict and metric_dict should be dictionaries.")
        run = os.path.join(self.log_dir, run_name or str(time.time()))
        hparams = {k: (v.item() if hasattr(v, "item") else v) for k, v in hparam_dict.items()}
        pb = summary_v2.hparams_pb(hparams)
        self._add(pb, global_step, log_dir=run)
        for key, value in metric_dict.items():
            summary_pb2 = _pb()[1]
            val = summary_pb2.Summary.Value(tag=key, simple_value=_scalar(value))
            self._add(summary_pb2.Summary(value=[val]), global_step, log_dir=run)

    def flush(self) -> None:
        """Write everything queued to disk."""
        for w in self._writers.values():
            w.flush()

    def close(self) -> None:
        """Flush and close every event file of this writer."""
        for w in self._writers.values():
            w.flush()
            w.close()
        self._writers = {}

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
