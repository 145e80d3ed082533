"""Keep OpenCV on one code path while phantoms are drawn, so any x86 CPU draws the same bytes.

OpenCV picks SIMD kernels (SSE4, AVX2, AVX-512) at run time from what the CPU offers,
and those kernels round differently: the same seed drew different phantom bytes with
AVX2 on and off (``OPENCV_CPU_DISABLE=AVX2,FMA3,AVX,FP16``; tests/test_synth.py checks
it). :func:`opencv_baseline` switches the dispatched kernels off (``cv2.setUseOptimized``)
for as long as a phantom is being drawn, which leaves OpenCV's baseline code, the
same on every CPU the wheel runs on. It was not slower for the generator (6.1 s vs
6.6 s for five pairs).

The flag is process-wide, so entries are counted: it is switched back only when the
last thread drawing a phantom leaves. Other OpenCV work running in another thread at
the same moment runs on the baseline code too (correct, only perhaps slower).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import cv2

_lock = threading.Lock()
_depth = 0
_saved = True


@contextlib.contextmanager
def opencv_baseline() -> Iterator[None]:
    """Run the body with OpenCV's run-time dispatched SIMD kernels switched off.

    Also a decorator (``@opencv_baseline()``) for functions that draw.
    """
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = cv2.useOptimized()
            cv2.setUseOptimized(False)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                cv2.setUseOptimized(_saved)
