"""usseg: ultrasound segmentation (DSANet, IntraSense-Net) as MONAI networks."""
__version__ = "0.1.0"
