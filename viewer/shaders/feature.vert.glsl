#version 330
// Instanced buildings (u_kind 0: unit box) and trees (1: unit trunk + cone), viewer/features.py.
uniform mat4 u_viewproj;      // projection * camera-relative rotation
uniform vec3 u_offset;        // tile centre - camera position (m)
uniform float u_logdepth_vs;  // 1 / log2(far + 1), vertex log depth only
in vec3 in_pos;               // unit mesh: x, y in [-1, 1] (east, north), z in [0, 1] (up)
in vec3 in_normal;
in float in_part;             // 0 wall, 1 roof, 2 crown, 3 trunk
in vec3 i_base;               // base centre relative to the tile centre (m)
in vec3 i_east;               // half axes (m) and the up axis (full height, m)
in vec3 i_north;
in vec3 i_up;
out vec3 v_rel;
out vec3 v_normal;
out float v_part;
out float v_shade;            // per-instance brightness variation
out float v_pick;             // per-instance choice in [0, 1) (roof material)
out float v_logz;
void main() {
    vec3 rel = u_offset + i_base + in_pos.x * i_east + in_pos.y * i_north + in_pos.z * i_up;
    // normals of a scaled orthogonal frame: inverse transpose = each axis / its squared length
    v_normal = in_normal.x * i_east / max(dot(i_east, i_east), 1e-6)
             + in_normal.y * i_north / max(dot(i_north, i_north), 1e-6)
             + in_normal.z * i_up / max(dot(i_up, i_up), 1e-6);
    v_rel = rel;
    v_part = in_part;
    v_shade = 0.85 + 0.3 * fract(sin(float(gl_InstanceID) * 12.9898) * 43758.5453);
    v_pick = fract(sin(float(gl_InstanceID) * 78.233 + 1.7) * 24634.6345);
    gl_Position = u_viewproj * vec4(rel, 1.0);
    v_logz = 1.0 + gl_Position.w;
#ifdef VERTEX_LOGDEPTH
    gl_Position.z = (log2(max(1e-6, v_logz)) * u_logdepth_vs * 2.0 - 1.0) * gl_Position.w;
#endif
}
