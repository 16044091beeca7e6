"""Data sources: offline photos, Fashion-MNIST, ImageNet validation layouts, and grids composed from any of them."""
