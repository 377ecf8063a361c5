"""The per-image NumPy reference (``imagecorruptions``, PyPI ``imagecorruptions-imaug``) run at
the CIFAR-10-C parameters, for fidelity tests and speed comparisons.

The package hard-codes the ImageNet-C table inside each function (``c = [...][severity - 1]``).
:func:`with_severity_table` swaps that one constant for the CIFAR row and leaves the rest of the
function's code untouched, so the package's own algorithm runs at the CIFAR parameters. Three
corruptions cannot be re-parameterised that way:

- ``zoom_blur`` builds its factors with ``np.arange`` calls; here it is rebuilt from the
  package's ``clipped_zoom`` with the CIFAR factors.
- ``pixelate`` in the package enlarges with ``NEAREST``; the CIFAR code uses ``BOX`` both ways,
  done here with Pillow directly.
- ``elastic_transform`` in the package lacks the CIFAR affine step and uses other parameters;
  it is returned as is (ImageNet-C parameters), useful for timing only.

``frost`` keeps the package's texture handling (full-size textures at 32x32, all six drawn;
the CIFAR code shrinks them by 0.2 first and draws from the first five), so only its blend
weights are CIFAR's.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import numpy as np
from PIL import Image

try:
    import imagecorruptions.corruptions as _reference
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "robustflow.corruptions.reference needs imagecorruptions-imaug: pip install imagecorruptions-imaug (a robustflow dependency)"
    ) from error

from .blur import zoom_factors
from .params import CIFAR_SEVERITY_PARAMS, CORRUPTIONS

ReferenceFunction = Callable[[Image.Image, int], np.ndarray]

_INTEGER_PARAMS = {"jpeg_compression"}  # Pillow wants an integer quality
_NOT_PATCHABLE = {"zoom_blur", "pixelate", "elastic_transform"}


def _plain(value: object) -> object:
    """NamedTuples and bools as the plain tuples and ints the reference code expects."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, bool):
        return int(value)
    return value


def _same_structure(a: object, b: object) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
    return isinstance(a, (int, float)) and isinstance(b, (int, float))


def with_severity_table(function: types.FunctionType, table: tuple) -> types.FunctionType:
    """A copy of ``function`` whose 5-row severity table constant is replaced by ``table``.

    Raises RuntimeError unless exactly one constant has 5 rows shaped like ``table``'s.
    """
    code = function.__code__
    matches = [
        i
        for i, const in enumerate(code.co_consts)
        if isinstance(const, tuple)
        and len(const) == len(table)
        and all(_same_structure(row, new_row) for row, new_row in zip(const, table))
    ]
    if len(matches) != 1:
        raise RuntimeError(f"expected one severity table in {function.__name__}, found {len(matches)}")
    consts = list(code.co_consts)
    consts[matches[0]] = table
    return types.FunctionType(
        code.replace(co_consts=tuple(consts)),
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )


def zoom_blur(image: Image.Image, severity: int) -> np.ndarray:
    """The package's zoom blur (``clipped_zoom`` average) with the CIFAR zoom factors."""
    x = (np.array(image) / 255.0).astype(np.float32)
    factors = zoom_factors(CIFAR_SEVERITY_PARAMS["zoom_blur"][severity - 1])
    out = np.zeros_like(x)
    for factor in factors:
        out += _reference.clipped_zoom(x, factor)[: x.shape[0], : x.shape[1], :]
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


def pixelate(image: Image.Image, severity: int) -> np.ndarray:
    """The CIFAR-10-C pixelation: Pillow BOX down to ``int(size * c)``, BOX back up."""
    factor = CIFAR_SEVERITY_PARAMS["pixelate"][severity - 1]
    width, height = image.size
    small = image.resize((int(width * factor), int(height * factor)), Image.BOX)
    return np.array(small.resize((width, height), Image.BOX), dtype=np.float64)


def reference_functions() -> dict[str, ReferenceFunction]:
    """Per-image reference for every corruption: ``f(pil_rgb_image, severity)`` returning a
    float HWC array on the 0..255 scale (see the module docstring for the exceptions)."""
    functions: dict[str, ReferenceFunction] = {
        "zoom_blur": zoom_blur,
        "pixelate": pixelate,
        "elastic_transform": _reference.elastic_transform,
    }
    for name in CORRUPTIONS:
        if name in _NOT_PATCHABLE:
            continue
        table = tuple(_plain(row) for row in CIFAR_SEVERITY_PARAMS[name])
        if name in _INTEGER_PARAMS:
            table = tuple(int(row) for row in table)
        patched = with_severity_table(getattr(_reference, name), table)
        functions[name] = lambda image, severity, f=patched: np.asarray(f(image, severity), dtype=np.float64)
    return {name: functions[name] for name in CORRUPTIONS}
