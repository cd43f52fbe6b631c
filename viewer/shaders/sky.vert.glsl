#version 330
in vec2 in_ndc;
out vec2 v_ndc;
void main() { v_ndc = in_ndc; gl_Position = vec4(in_ndc, 0.0, 1.0); }
