"""A simple thermal (long-wave infrared) sensor model: per class a temperature offset, a sun
gain and an emissivity; rendered by the shaders into a float target (``RenderTargets``).

Brightness temperature of a surface pixel (Kelvin)::

    T_s = T_air + offset[c] + gain[c] * (1 - a) * max(n . sun, 0)
    T_b = emissivity[c] ** 0.25 * T_s

with ``a`` the pixel's albedo luminance (what the visible channel shows, before lighting)
and ``n . sun`` the sun loading of the lit face. Sky pixels read ``T_air - SKY_DEPRESSION_K``
(a clear sky is far colder than the ground in 8-14 um). Ground of tiles without the feature
layer uses the ``unclassified`` row. The numbers are rounded choices in the spirit of the
broadband 8-14 um emissivities of the ASTER/ECOSTRESS spectral library (water 0.99, leaves
0.97-0.98, asphalt 0.95, concrete and roofing 0.92-0.93, dry sand 0.92) and of daytime
surface-minus-air temperatures (sunlit asphalt, dark roofs and sand tens of K above the air, transpiring
canopies a few K, open water below it by day); not fitted, not a radiative-transfer model (no atmosphere path,
no thermal inertia, no time of day beyond the sun direction).
"""

from __future__ import annotations

import numpy as np

from runtime.featurelayer import CLASS_NAMES

AIR_K = 288.15
"""Default air temperature (15 C)."""
SKY_DEPRESSION_K = 50.0
THERMAL = {  # class: (offset K, sun gain K, emissivity)
    "water": (-2.0, 1.0, 0.99), "snow_ice": (-3.0, 1.0, 0.98), "bare_rock": (0.0, 20.0, 0.93),
    "sand": (0.0, 22.0, 0.92), "grassland": (-1.0, 10.0, 0.97), "shrubland": (0.0, 14.0, 0.96),
    "broadleaf_forest": (0.0, 6.0, 0.97), "needleleaf_forest": (0.0, 7.0, 0.98),
    "cropland": (-1.0, 9.0, 0.97), "wetland": (-1.0, 5.0, 0.98), "urban": (2.0, 18.0, 0.93),
    "building": (2.0, 30.0, 0.92), "road": (2.0, 25.0, 0.95), "tree": (0.0, 6.0, 0.97),
    "sky": (0.0, 0.0, 1.0),
}
UNCLASSIFIED = (0.0, 10.0, 0.95)


def thermal_table() -> np.ndarray:
    """(16, 3) float32 rows (offset K, sun gain K, emissivity) by class id; row 15: unclassified."""
    t = np.array([THERMAL[n] for n in CLASS_NAMES] + [UNCLASSIFIED], np.float32)
    assert t.shape == (16, 3)
    return t
