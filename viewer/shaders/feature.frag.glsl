#version 330
uniform int u_kind;           // 0 buildings, 1 trees
uniform vec3 u_albedo[2];     // layer palette: building, tree
uniform float u_nir[2];
uniform vec3 u_parts[4];      // colour multipliers per part (viewer/features.py PART_COLOURS)
uniform vec3 u_sun;
uniform vec3 u_up;
uniform vec3 u_horizon;
uniform vec3 u_zenith;
uniform float u_haze_m;
uniform float u_logdepth;
in vec3 v_rel;
in vec3 v_normal;
in float v_part;
in float v_shade;
in float v_pick;
in float v_logz;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_normal;
layout(location = 2) out vec4 f_nir;
layout(location = 3) out vec4 f_class;  // (class id + 1) / 255 (runtime.featurelayer table)
layout(location = 4) out vec4 f_thermal;  // brightness temperature (K)
#include "thermal.glsl"
void main() {
    int part = int(v_part + 0.5);
    vec3 albedo = u_albedo[u_kind] * u_parts[part] * v_shade;
    if (part == 3) albedo = u_parts[3] * v_shade;  // bark
    // roofs: tiles on some, grey membrane or gravel on most (city blocks are flat-roofed)
    if (part == 1) albedo = (v_pick < 0.3 ? u_parts[1] : vec3(0.36, 0.35, 0.34)) * v_shade;
    vec3 n = normalize(v_normal);
    float diffuse = max(dot(n, u_sun), 0.0);
    float sky = 0.5 + 0.5 * dot(n, u_up);
    vec3 lit = albedo * (0.95 * diffuse + 0.35 * sky * u_zenith + 0.08);
    float dist = length(v_rel);
    float haze = 1.0 - exp(-dist / u_haze_m);
    f_color = vec4(mix(lit, u_horizon, clamp(haze, 0.0, 1.0)), 1.0);
    f_normal = vec4(n, 1.0);
    f_nir = vec4(u_nir[u_kind] * v_shade, albedo.r, albedo.g, 1.0);
    f_class = vec4(float((u_kind == 0 ? 11 : 13) + 1) / 255.0, 0.0, 0.0, 1.0);
    f_thermal = vec4(brightness_k(u_kind == 0 ? 11 : 13, n, albedo), 0.0, 0.0, 1.0);
#ifndef VERTEX_LOGDEPTH
    gl_FragDepth = log2(v_logz) * u_logdepth;
#endif
}
