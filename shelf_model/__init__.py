"""Model code run inside TFX components: features, preprocessing, Keras model, trainer."""
