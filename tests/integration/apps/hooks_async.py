"""apps/hooks.py with async hooks, in debug mode."""
from hooks import main, make_app

app = make_app(async_hooks=True)

if __name__ == "__main__":
    main(app)
