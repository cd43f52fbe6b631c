"""Engine-free core of worldstream: tile maths, cameras, LOD selection, meshing.

Depends on numpy and trimesh only (no torch, GL or sockets); every other package
imports it.
"""
