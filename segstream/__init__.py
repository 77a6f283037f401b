"""segstream: real-time customer segmentation."""
