"""TFLite files as the app receives them: model metadata, without TensorFlow."""
