"""Where a located DEM's pixels are: its ``crs`` string -> a (x_m, y_m) -> (lat, lon) function.

The staged DEMs (``../shared/data/dem``) are either local equirectangular grids (their
``crs`` writes out the constants) or Transverse Mercator (UTM zones, NZTM2000). No
projection library is installed, so the inverse Transverse Mercator is written out
(Snyder 1987, "Map projections: a working manual", eqs. 8-18 .. 8-25; ~1 mm within a
zone). Datum shifts (NAD27, ED50: ~100-200 m) are ignored; ellipsoids are not.
"""

from __future__ import annotations

import re

import numpy as np


def tm_inverse(x, y, lon0: float, k0: float, fe: float, fn: float, a: float = 6378137.0,
               f: float = 1 / 298.257223563) -> tuple[np.ndarray, np.ndarray]:
    """Transverse Mercator easting/northing (m) -> (lat, lon) degrees (Snyder 1987, eqs. 8-18..8-25)."""
    e2 = f * (2 - f)
    ep2 = e2 / (1 - e2)
    mu = (np.asarray(y) - fn) / k0 / (a * (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256))
    e1 = (1 - np.sqrt(1 - e2)) / (1 + np.sqrt(1 - e2))
    p1 = (mu + (1.5 * e1 - 27 * e1**3 / 32) * np.sin(2 * mu) + (21 * e1**2 / 16 - 55 * e1**4 / 32) * np.sin(4 * mu)
          + 151 * e1**3 / 96 * np.sin(6 * mu) + 1097 * e1**4 / 512 * np.sin(8 * mu))
    c1, t1 = ep2 * np.cos(p1) ** 2, np.tan(p1) ** 2
    n1 = a / np.sqrt(1 - e2 * np.sin(p1) ** 2)
    r1 = a * (1 - e2) / (1 - e2 * np.sin(p1) ** 2) ** 1.5
    d = (np.asarray(x) - fe) / (n1 * k0)
    lat = p1 - n1 * np.tan(p1) / r1 * (d**2 / 2 - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * ep2) * d**4 / 24
                                       + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * ep2 - 3 * c1**2) * d**6 / 720)
    lon = (d - (1 + 2 * t1 + c1) * d**3 / 6
           + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * ep2 + 24 * t1**2) * d**5 / 120) / np.cos(p1)
    return np.degrees(lat), lon0 + np.degrees(lon)


_ELLIPSOIDS = {"WGS 84": (6378137.0, 1 / 298.257223563), "ED50": (6378388.0, 1 / 297.0),
               "NAD27": (6378206.4, 1 / 294.978698214), "NZGD2000": (6378137.0, 1 / 298.257222101)}


def dem_to_lonlat(crs: str):
    """A function (x_m, y_m) -> (lat, lon) for a DEM's ``crs`` string, or None if unsupported."""
    m = re.search(r"about lon (\S+), lat (\S+): x_m = \(lon - \S+\) \* (\S+), y_m = \(lat - \S+\) \* (\S+)", crs)
    if m:
        lon_c, lat_c, kx, ky = (float(v) for v in m.groups())
        return lambda x, y: (lat_c + np.asarray(y) / ky, lon_c + np.asarray(x) / kx)
    m = re.search(r"UTM (\d+)([NS])", crs)
    if m:
        zone, hemi = int(m.group(1)), m.group(2)
        a, f = next((v for k, v in _ELLIPSOIDS.items() if k in crs), _ELLIPSOIDS["WGS 84"])
        return lambda x, y: tm_inverse(x, y, zone * 6.0 - 183.0, 0.9996, 500000.0,
                                       0.0 if hemi == "N" else 10_000_000.0, a, f)
    if "EPSG:2193" in crs:  # NZTM2000
        return lambda x, y: tm_inverse(x, y, 173.0, 0.9996, 1_600_000.0, 10_000_000.0, *_ELLIPSOIDS["NZGD2000"])
    return None
