#version 330
uniform sampler2D u_tex;
uniform sampler2D u_ptex;     // parent's colour (geomorph target)
uniform sampler2D u_nir;
uniform sampler2D u_class;    // (T+1)^2 land-cover class ids / 255 (runtime.featurelayer), nearest
uniform vec3 u_palette[16];   // per class: albedo and NIR of the feature layer
uniform float u_palette_nir[16];
uniform vec2 u_class_fade;    // class colour full until x metres, none from y (the layer's coarsest
                              // tiles lie beyond: no seam where tiles without classes begin)
uniform vec4 u_tile[4];       // see the vertex shader
uniform bool u_water;
uniform vec3 u_sun;           // unit vector toward the sun
uniform vec3 u_up;            // local up at the camera
uniform vec3 u_horizon;
uniform vec3 u_zenith;
uniform float u_haze_m;       // e-folding distance of aerial perspective
uniform float u_logdepth;     // 1 / log2(far + 1)
in vec3 v_rel;
in vec3 v_normal;
in vec3 v_up;
in vec2 v_uv;
in float v_height;
in float v_morph;
in float v_logz;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_normal;   // world-frame unit normal, w = 1 on terrain
layout(location = 2) out vec4 f_nir;      // false colour (NIR, red, green) -> (R, G, B)
layout(location = 3) out vec4 f_class;    // segmentation: (class id + 1) / 255, 0 = unclassified
layout(location = 4) out vec4 f_thermal;  // brightness temperature (K)
#include "sky_colour.glsl"
#include "thermal.glsl"
int class_at(ivec2 rc) {
    return int(texelFetch(u_class, clamp(rc, ivec2(0), textureSize(u_class, 0) - 1), 0).r * 255.0 + 0.5);
}
void main() {
    bool has_tex = u_tile[0].w > 0.5, has_ptex = u_tile[1].z > 0.5, has_nir = u_tile[1].w > 0.5;
    bool has_class = u_tile[3].x > 0.5;
    vec3 n = normalize(v_normal);
    vec3 albedo = has_tex ? texture(u_tex, v_uv).rgb : vec3(0.45, 0.42, 0.36);
    if (has_ptex) albedo = mix(albedo, texture(u_ptex, v_uv * u_tile[2].zw + u_tile[2].xy).rgb, v_morph);
    int cls = 255;
    float nir_class = 0.0;
    float lake = 0.0;  // share of water among the four samples around: lakes (>= 0.5) above the water level
    if (has_class) {
        // the sample grid: uv * T; the class of the nearest sample, the colour bilinear over the
        // four around (class edges and streets stay sharp without stair steps)
        vec2 g = v_uv * vec2(textureSize(u_class, 0) - 1);
        cls = class_at(ivec2(floor(g + 0.5)));
        ivec2 g0 = ivec2(floor(g));
        vec2 f = g - vec2(g0);
        int c00 = class_at(g0), c01 = class_at(g0 + ivec2(1, 0));
        int c10 = class_at(g0 + ivec2(0, 1)), c11 = class_at(g0 + ivec2(1, 1));
        lake = mix(mix(float(c00 == 0), float(c01 == 0), f.x), mix(float(c10 == 0), float(c11 == 0), f.x), f.y);
        vec3 pal = mix(mix(u_palette[c00], u_palette[c01], f.x), mix(u_palette[c10], u_palette[c11], f.x), f.y);
        float lum = dot(albedo, vec3(0.3, 0.59, 0.11));
        float w = 0.75 * (1.0 - smoothstep(u_class_fade.x, u_class_fade.y, length(v_rel)));
        albedo = mix(albedo, pal * (0.8 + 0.4 * clamp(lum / max(dot(pal, vec3(0.3, 0.59, 0.11)), 0.05), 0.5, 1.5)), w);
        nir_class = u_palette_nir[cls];
    }
    float dist = length(v_rel);
    vec3 view = -v_rel / max(dist, 1e-6);
    vec3 lit;
    float level = u_tile[3].y;  // 0: the sea; below 0: a lake's surface, water on it too
    // water: below the tile's water level (with or without the layer: the sea), or where the
    // layer's classes say water (share >= 0.5 of the four samples around: lakes at their surface,
    // in tiles where renderer.class_lakes holds: u_tile[3].z)
    if (u_water && (v_height < level + (level < 0.0 ? 0.05 : 0.0) || (lake >= 0.5 && u_tile[3].z > 0.5))) {
        // (depth tint: below the level as deep as it is; a lake's depth is unknown: 20 m)
        cls = 0;
        if (has_class) nir_class = u_palette_nir[0];
        n = normalize(v_up);
        float depth = v_height < level ? level - v_height : 20.0;
        vec3 deep = mix(vec3(0.06, 0.24, 0.30), vec3(0.01, 0.07, 0.16), clamp(depth / 150.0, 0.0, 1.0));
        vec3 body = mix(albedo * 0.6, deep, clamp(depth / 8.0, 0.0, 1.0)) * (0.35 + 0.65 * max(dot(n, u_sun), 0.0));
        float fres = 0.02 + 0.98 * pow(1.0 - max(dot(n, view), 0.0), 5.0);
        vec3 refl = sky_colour(reflect(-view, n), u_up, u_sun, u_horizon, u_zenith);
        float glint = pow(max(dot(reflect(-u_sun, n), view), 0.0), 400.0) * 3.0;
        lit = mix(body, refl, fres) + vec3(1.0, 0.95, 0.85) * glint;
    } else {
        // lit in linear light: the albedo decoded from sRGB, times the sun's and the sky's
        // irradiance, encoded back (the product in display values left shaded slopes at 0.2x
        // their albedo: black mountainsides)
        float diffuse = max(dot(n, u_sun), 0.0);
        float sky = 0.5 + 0.5 * dot(n, u_up);
        vec3 irradiance = vec3(1.0, 0.96, 0.90) * (2.2 * diffuse) + pow(mix(u_zenith, vec3(0.8), 0.5), vec3(2.2)) * (1.3 * sky) + 0.04;
        // bare rock where the ground is steeper than soil and plants hold (45 -> 62 degrees):
        // cliffs and crags read as rock, not as the tile's 30 m - 500 m colour (drawn colour only;
        // NIR, classes and thermal keep the tile's albedo)
        float rock = 1.0 - smoothstep(0.47, 0.71, dot(n, normalize(v_up)));
        vec3 ground = mix(albedo, mix(vec3(0.50, 0.46, 0.40), albedo, 0.3), rock * (has_class ? 1.0 - float(cls == 0) : 1.0));
        lit = pow(pow(ground, vec3(2.2)) * irradiance, vec3(1.0 / 2.2));
    }
    f_thermal = vec4(brightness_k(cls == 255 ? 15 : cls, n, albedo), 0.0, 0.0, 1.0);
    float haze = 1.0 - exp(-dist / u_haze_m);
    f_color = vec4(mix(lit, u_horizon, clamp(haze, 0.0, 1.0)), 1.0);
    f_normal = vec4(n, 1.0);
    float nir = has_nir ? texture(u_nir, v_uv).r : nir_class;
    f_nir = (has_nir || has_class) ? vec4(nir, albedo.r, albedo.g, 1.0) : vec4(0.0);
    f_class = cls == 255 ? vec4(0.0) : vec4(float(cls + 1) / 255.0, 0.0, 0.0, 1.0);
#ifndef VERTEX_LOGDEPTH
    gl_FragDepth = log2(v_logz) * u_logdepth;
#endif
}
