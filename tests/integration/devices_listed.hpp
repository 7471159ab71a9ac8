#pragma once
// Runs the real server binary's `devices` command, for the fleet-health tests.

#include "fixture.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

namespace caresync::testing {

/// `caresync-server devices --db <the server's database> <args>`: one JSON object per
/// device, by device id.
inline std::map<std::string, nlohmann::json> devices_listed(test_server& server, const std::string& args = "") {
  const std::string command = std::string(CARESYNC_SERVER_BINARY) + " devices --db " + server.config().database_file +
                              " " + args + " 2>/dev/null";
  std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
  REQUIRE(pipe);
  std::map<std::string, nlohmann::json> lines;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe.get())) {
    auto j = nlohmann::json::parse(buf);
    lines[j["device"].get<std::string>()] = j;
  }
  return lines;
}

}  // namespace caresync::testing
