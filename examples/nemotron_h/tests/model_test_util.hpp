// Helpers shared by the NemotronH model host tests.
#pragma once

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "piecewise/error.hpp"

namespace nh_test {

/// The message of the piecewise::config_error `f` throws, "<no exception>" when it returns,
/// or "<other exception: ...>" for any other exception type.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const piecewise::config_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<other exception: ") + e.what() + ">";
  } catch (...) {
    return "<other exception>";
  }
  return "<no exception>";
}

/// A fresh empty directory under the system temp dir, removed on destruction.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& tag) {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("nh_model_test_" + tag + "_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

inline std::filesystem::path data_dir() { return std::filesystem::path(NH_TEST_DATA_DIR); }

#ifdef NH_FUZZ_CORPUS_DIR
/// The files of one fuzz target's seed corpus (fuzz/corpus/<target>/), sorted.
inline std::vector<std::filesystem::path> fuzz_corpus_files(const std::string& target) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(NH_FUZZ_CORPUS_DIR) / target)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}
#endif

}  // namespace nh_test
