"""tlcore: the transfer-learning engine behind Transfer Learning Lab. Never imports streamlit."""
__version__ = "0.1.0"
