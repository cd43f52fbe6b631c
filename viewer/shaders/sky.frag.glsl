#version 330
uniform mat4 u_inv_viewproj;
uniform vec3 u_up;
uniform vec3 u_sun;
uniform vec3 u_horizon;
uniform vec3 u_zenith;
in vec2 v_ndc;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_normal;
layout(location = 2) out vec4 f_nir;
layout(location = 3) out vec4 f_class;  // segmentation: sky (id 14) + 1
layout(location = 4) out vec4 f_thermal;  // brightness temperature (K): a clear sky is cold
uniform float u_sky_k;
#include "sky_colour.glsl"
void main() {
    vec4 p = u_inv_viewproj * vec4(v_ndc, 1.0, 1.0);
    vec3 dir = normalize(p.xyz / p.w);
    f_color = vec4(sky_colour(dir, u_up, u_sun, u_horizon, u_zenith), 1.0);
    f_normal = vec4(0.0);
    f_nir = vec4(0.0);
    f_class = vec4(15.0 / 255.0, 0.0, 0.0, 1.0);
    f_thermal = vec4(u_sky_k, 0.0, 0.0, 1.0);
}
