"""`python -m stack.rekey_cities`: stored registrations get the city key of the current rule."""

from common import records
from stack.settings import load

if __name__ == "__main__":
    db = load().database()
    try:
        print(f"{records.rekey_cities(db)} registrations re-keyed")
    finally:
        db.client.close()
