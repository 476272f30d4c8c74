// description: Fourier-inspired quantum attention (HQCNN-style): H + Rz(x_i) phase encoding, CZ-chain entangled superposition, then per layer QFT -> trainable P(w) + neighbour CP(w) phases -> inverse QFT -> trainable Ry readout
// defaults: qubits=4 layers=2

// Per layer (n = qubits, b = layer*(3n-1)): P(w{b+i}) on qubit i, CP(w{b+n+i}) on qubits i,i+1,
// Ry(w{b+2n-1+i}) on qubit i -> 3n-1 weights per layer. The QFT omits its final swaps: a swap
// network around the trainable diagonal would only relabel which weight sits on which qubit.
OPENQASM 3.0;
include "stdgates.inc";

{% set n = qubits %}
{% set per_layer = 3 * n - 1 %}
{% for i in range(n) %}
input float[64] x{{ i }};
{% endfor %}
{% for k in range(per_layer * layers) %}
input float[64] w{{ k }};
{% endfor %}
qubit[{{ n }}] q;

// encoding: data as phases on a uniform superposition
{% for i in range(n) %}
h q[{{ i }}];
rz(x{{ i }}) q[{{ i }}];
{% endfor %}
// entangled superposition
{% for i in range(n - 1) %}
cz q[{{ i }}], q[{{ i + 1 }}];
{% endfor %}
{% for l in range(layers) %}
{% set b = l * per_layer %}

// layer {{ l }}: QFT
{% for j in range(n) %}
h q[{{ j }}];
{% for k in range(j + 1, n) %}
cp(pi/{{ 2 ** (k - j) }}) q[{{ k }}], q[{{ j }}];
{% endfor %}
{% endfor %}
// trainable phases in the Fourier basis
{% for i in range(n) %}
p(w{{ b + i }}) q[{{ i }}];
{% endfor %}
{% for i in range(n - 1) %}
cp(w{{ b + n + i }}) q[{{ i }}], q[{{ i + 1 }}];
{% endfor %}
// inverse QFT
{% for j in range(n) | reverse %}
{% for k in range(j + 1, n) | reverse %}
cp(-pi/{{ 2 ** (k - j) }}) q[{{ k }}], q[{{ j }}];
{% endfor %}
h q[{{ j }}];
{% endfor %}
// trainable readout rotations
{% for i in range(n) %}
ry(w{{ b + 2 * n - 1 + i }}) q[{{ i }}];
{% endfor %}
{% endfor %}
