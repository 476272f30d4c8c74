// description: data re-uploading: every layer encodes Ry(x_i) again, then trainable Rz·Ry on every qubit and CNOT i->(i+r)%n with range r = layer % (n-1) + 1
// defaults: qubits=4 layers=3

// Weights: w{2*(layer*n + i)} is the Rz angle, w{2*(layer*n + i) + 1} the Ry angle on qubit i: 2·n·L,
// 24 at the defaults, as many as sel's 4 qubits x 2 layers. No dead weights: each layer ends in Ry,
// which does not commute with the Z read-out, so every Rz before it still moves the outputs.
// Re-uploading makes each output a Fourier series of degree L in every input (degree 1 for sel).
OPENQASM 3.0;
include "stdgates.inc";

{% for i in range(qubits) %}
input float[64] x{{ i }};
{% endfor %}
{% for k in range(2 * layers * qubits) %}
input float[64] w{{ k }};
{% endfor %}
qubit[{{ qubits }}] q;
{% for l in range(layers) %}

// layer {{ l }}: encode, rotate, entangle
{% for i in range(qubits) %}
{% set w = 2 * (l * qubits + i) %}
ry(x{{ i }}) q[{{ i }}];
rz(w{{ w }}) q[{{ i }}];
ry(w{{ w + 1 }}) q[{{ i }}];
{% endfor %}
{% if qubits > 1 %}
{% set r = l % (qubits - 1) + 1 %}
{% for i in range(qubits) %}
cx q[{{ i }}], q[{{ (i + r) % qubits }}];
{% endfor %}
{% endif %}
{% endfor %}
