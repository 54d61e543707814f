"""Speed measurements of the compiler and the farm, and the model zoo they share with the tests."""
