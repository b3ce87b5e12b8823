"""Reading and writing other frameworks' models: PyTorch, TensorFlow 1, Keras."""
