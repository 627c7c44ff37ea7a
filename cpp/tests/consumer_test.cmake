# Installs the hierspec build tree into a scratch prefix, then configures, builds and runs the
# consumer example (cpp/examples/consumer) against the installed package with find_package.
# Run by ctest as: cmake -DHIERSPEC_BUILD_DIR=... -DCONSUMER_SOURCE_DIR=... -DWORK_DIR=...
#                        -DCMAKE_GENERATOR=... -DCXX_COMPILER=... -P consumer_test.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")

function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run_step(${CMAKE_COMMAND} --install "${HIERSPEC_BUILD_DIR}" --prefix "${prefix}")
run_step(${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -G "${CMAKE_GENERATOR}"
         -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix}
         -DCMAKE_BUILD_TYPE=Release)
run_step(${CMAKE_COMMAND} --build "${build}")
if(EXISTS "${build}/consumer")
  run_step("${build}/consumer")
else()
  run_step("${build}/Release/consumer")
endif()
