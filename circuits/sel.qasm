// description: Ry(x_i) angle encoding + strongly-entangling layers (Rz·Ry·Rz on every qubit, CNOT i->(i+r)%n with range r = layer % (n-1) + 1)
// defaults: qubits=4 layers=2
// observables: {% for i in range(qubits) %}Z{{ i }} {% endfor +%}

// No H before the encoding: Ry(x) alone maps x to a distinct point on the X-Z great circle,
// so every feature shows up in Z as cos(x) even before any trainable layer.
// Weights: w{3*(layer*n + i) + k} for k = 0,1,2 (Rz, Ry, Rz) on qubit i. As in PennyLane's
// StronglyEntanglingLayers, the last layer's final Rz angles cannot change Z readouts (n dead weights).
OPENQASM 3.0;
include "stdgates.inc";

{% for i in range(qubits) %}
input float[64] x{{ i }};
{% endfor %}
{% for k in range(3 * layers * qubits) %}
input float[64] w{{ k }};
{% endfor %}
qubit[{{ qubits }}] q;

{% for i in range(qubits) %}
ry(x{{ i }}) q[{{ i }}];
{% endfor %}
{% for l in range(layers) %}

// layer {{ l }}
{% for i in range(qubits) %}
{% set w = 3 * (l * qubits + i) %}
rz(w{{ w }}) q[{{ i }}];
ry(w{{ w + 1 }}) q[{{ i }}];
rz(w{{ w + 2 }}) q[{{ i }}];
{% endfor %}
{% if qubits > 1 %}
{% set r = l % (qubits - 1) + 1 %}
{% for i in range(qubits) %}
cx q[{{ i }}], q[{{ (i + r) % qubits }}];
{% endfor %}
{% endif %}
{% endfor %}
