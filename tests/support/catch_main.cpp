// The test programs' main: Catch2's, except that a test filter matching no test fails.
// CTest runs each test case by name, and a name CTest cuts short (it splits arguments at
// ';') would otherwise match nothing and pass without running a single assertion.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  auto& data = session.configData();
  data.warnings = static_cast<Catch::WarnAbout::What>(data.warnings | Catch::WarnAbout::NoTests);
  return session.run();
}
