"""`python -m lstm_exp`: see lstm_exp/app.py for examples."""
from lstm_exp.app import main

if __name__ == "__main__":
    main()
