"""Analysis: TCL's gradient response (c_p, c_n and their magnitudes, denominator shares) and embedding
geometry (alignment, uniformity, tolerance)."""

from tunedcl.analysis.geometry import alignment, geometry, tolerance, uniformity
from tunedcl.analysis.gradients import (
    Coefficients,
    batch_gradient_statistics,
    denominator_shares,
    gradient_coefficients,
    mean_gradient_magnitudes,
)

__all__ = [
    "Coefficients",
    "alignment",
    "batch_gradient_statistics",
    "denominator_shares",
    "geometry",
    "gradient_coefficients",
    "mean_gradient_magnitudes",
    "tolerance",
    "uniformity",
]
