from facerec.cli import app

if __name__ == "__main__":  # detector worker processes re-import the main module
    app(prog_name="facerec")
