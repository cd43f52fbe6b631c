// Sky colour seen along a unit direction: horizon -> zenith gradient, darker below the
// horizon, plus the sun's disc. Included by terrain.frag.glsl (water reflections) and sky.frag.glsl.
vec3 sky_colour(vec3 dir, vec3 up, vec3 sun, vec3 horizon, vec3 zenith) {
    float e = dot(dir, up);
    vec3 c = mix(horizon, zenith, pow(clamp(e, 0.0, 1.0), 0.45));
    c = e < 0.0 ? horizon * 0.85 : c;
    return c + vec3(1.0, 0.9, 0.7) * pow(max(dot(dir, sun), 0.0), 256.0);
}
