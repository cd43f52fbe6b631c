#version 330
uniform mat4 u_viewproj;      // projection * camera-relative rotation
// Per tile, one write: [0] = (tile centre - camera position (m), has colour),
// [1] = (geomorph start, end distance (m; end <= 0: none), has parent colour, has NIR),
// [2] = parent uv = uv * zw + xy, [3] = (has land-cover classes, water level (m): 0 = the sea,
// a lake's surface below sea level where the tile shows one (renderer.water_level), classes'
// water above 0 m is lakes (renderer.class_lakes), 0).
uniform vec4 u_tile[4];
uniform bool u_water;
uniform float u_logdepth_vs;  // 1 / log2(far + 1), vertex log depth only
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in float in_height;
in vec3 in_up;
in float in_dh;
in vec3 in_pnormal;
out vec3 v_rel;
out vec3 v_normal;
out vec3 v_up;
out vec2 v_uv;
out float v_height;
out float v_morph;
out float v_logz;
void main() {
    vec3 rel = in_pos + u_tile[0].xyz;
    float m = u_tile[1].y > 0.0 ? smoothstep(u_tile[1].x, u_tile[1].y, length(rel)) : 0.0;
    float h = in_height + m * in_dh;
    rel += in_up * (m * in_dh);
    if (u_water && h < u_tile[3].y) rel += in_up * (u_tile[3].y - h);
    v_rel = rel;
    v_normal = mix(in_normal, in_pnormal, m);
    v_up = in_up;
    v_uv = in_uv;
    v_height = h;
    v_morph = m;
    gl_Position = u_viewproj * vec4(rel, 1.0);
    v_logz = 1.0 + gl_Position.w;
#ifdef VERTEX_LOGDEPTH
    // Outerra's vertex logarithmic depth: keeps early depth testing; exact at vertices,
    // approximate inside triangles that are long in depth (fine for display, not sensors).
    gl_Position.z = (log2(max(1e-6, v_logz)) * u_logdepth_vs * 2.0 - 1.0) * gl_Position.w;
#endif
}
