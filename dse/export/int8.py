"""int8 post-training quantization: onnxruntime static quantization of a network's ONNX file.

The fp32 file is pre-processed (shape inference, graph optimisation: BatchNorm and friends fused)
and quantized in onnxruntime's QDQ format: weights int8 per output channel, activations uint8 per
tensor (U8S8, onnxruntime's recommended CPU combination), biases int32, with activation ranges
calibrated (MinMax) on :data:`CALIBRATION_IMAGES` images of the train split. onnxruntime fuses each
DequantizeLinear -> Conv -> QuantizeLinear into one integer convolution when it loads the file, so
the file is an int8 network both on disk (about a quarter of the fp32 bytes) and when it runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dse.export.runtime import INPUT

CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32


def quantize(fp32: bytes, calibration: np.ndarray, batch: int = CALIBRATION_BATCH) -> bytes:
    """The int8 ONNX file of the fp32 ONNX file ``fp32``, calibrated on ``calibration``
    ([N, C, H, W] float32 images, normalised as in training)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.ascontiguousarray(calibration, dtype=np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{INPUT: images[i:i + batch]} for i in range(0, len(images), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="dse-int8-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return out.read_bytes()
