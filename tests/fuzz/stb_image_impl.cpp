// tests/fuzz/stb_image_impl.cpp — stb_image compiled into fuzz_image, so the
// decoder itself is instrumented (ASan, UBSan, coverage). The qnn library
// links Debian's libstb.so; definitions in the executable take precedence, so
// data/image_folder.cpp calls this copy of the same header.
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
