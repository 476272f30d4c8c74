// description: Ry(x_i) angle encoding + layers of trainable Rz then Ry on every qubit and a CNOT ring i->(i+1)%n
// defaults: qubits=4 layers=3

// Weights: w{2*(layer*n + i)} is the Rz angle, w{2*(layer*n + i) + 1} the Ry angle on qubit i.
// (Ry before Rz would leave the last layer's Rz angles without effect: Rz and CNOT commute with Z readout.)
OPENQASM 3.0;
include "stdgates.inc";

{% for i in range(qubits) %}
input float[64] x{{ i }};
{% endfor %}
{% for k in range(2 * layers * qubits) %}
input float[64] w{{ k }};
{% endfor %}
qubit[{{ qubits }}] q;

{% for i in range(qubits) %}
ry(x{{ i }}) q[{{ i }}];
{% endfor %}
{% for l in range(layers) %}

// layer {{ l }}
{% for i in range(qubits) %}
rz(w{{ 2 * (l * qubits + i) }}) q[{{ i }}];
ry(w{{ 2 * (l * qubits + i) + 1 }}) q[{{ i }}];
{% endfor %}
{% if qubits > 1 %}
{% for i in range(qubits) %}
cx q[{{ i }}], q[{{ (i + 1) % qubits }}];
{% endfor %}
{% endif %}
{% endfor %}
