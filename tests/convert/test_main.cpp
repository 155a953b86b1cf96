// Catch2 main for convert_weights_test.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
