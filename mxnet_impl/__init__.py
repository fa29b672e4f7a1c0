"""mxnet_impl: the MXNet Gluon backend. The framework is imported only by its submodules."""
