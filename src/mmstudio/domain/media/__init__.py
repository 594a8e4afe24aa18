"""Media: image sizes and (next) assets, recipes and the image service."""
