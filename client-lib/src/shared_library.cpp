// libcaresync.so is the static archives linked whole (client-lib/CMakeLists.txt); CMake
// wants at least one source of the shared library's own, and this is it.
namespace caresync::detail {
// The shared library's build marker; nothing calls it.
[[maybe_unused]] constexpr int k_shared_library = 1;
}  // namespace caresync::detail
