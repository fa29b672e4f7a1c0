"""jax_impl: the JAX (Flax, optax) backend. The framework is imported only by its submodules."""
