"""lstm_exp: reproduce, port and benchmark a CTC phone recognizer across inference backends."""
__version__ = "0.1.0"
