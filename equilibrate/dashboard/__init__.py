"""The operations console (`equilibrate dashboard`): a Streamlit multipage app over Redis and the data files."""
