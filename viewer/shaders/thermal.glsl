// Thermal brightness temperature (K) of a surface pixel: viewer/thermal.py. Included by the
// terrain and feature fragment shaders (which declare u_sun).
uniform vec3 u_thermal[16];   // per class id (15: unclassified): offset K, sun gain K, emissivity
uniform float u_air_k;
float brightness_k(int cls, vec3 n, vec3 albedo) {
    vec3 p = u_thermal[clamp(cls, 0, 15)];
    float absorbed = (1.0 - clamp(dot(albedo, vec3(0.3, 0.59, 0.11)), 0.0, 1.0)) * max(dot(n, u_sun), 0.0);
    return pow(p.z, 0.25) * (u_air_k + p.x + p.y * absorbed);
}
