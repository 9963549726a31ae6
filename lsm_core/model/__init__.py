"""The model's maths: what a liquid is and how one millisecond of it evolves, independent of any engine.

- `network`: the liquid itself (neurons, synapses, weights), its generation and its file.
- `neuron`: membrane, spikes, refractory period, synaptic kernel and current: one step as pure functions.
- `plasticity`: STDP, astrocyte-modulated STDP (NALSM), AP-STDP, the astrocyte and the decays.
- `randomness`: the counter-based draws that make an image's Bernoulli input spikes.
"""
