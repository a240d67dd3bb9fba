"""Inside the CNN: pure functions (no streamlit) behind the "Inside the CNN" page.

filters(net)                 -> the first convolution's kernels as RGB tiles
activations(net, x, prep)    -> the strongest channels of each layer group's output for one image
cnn_codes(codes, method)     -> a 2-D map (PCA or t-SNE) of pooled features
grad_cam(net, x, target)     -> a heat map of where the last conv group looked for a class
"""
from .core import (activations, cnn_codes, embed_2d, filter_change, filters, first_conv, grad_cam,
                   grad_cam_weights, last_conv_group, pool)

__all__ = ["activations", "cnn_codes", "embed_2d", "filter_change", "filters", "first_conv", "grad_cam",
           "grad_cam_weights", "last_conv_group", "pool"]
