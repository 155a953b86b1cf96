# The shipped demo model on the shipped samples, through the CLI: `atrous run` on
# models/samples/ (every image), then `atrous eval --json` against the committed
# label maps in models/samples/labels/. A damaged model file, a converter or GCN
# path regression, or a change in image loading / pre- or postprocessing drops
# the scores below the thresholds (the model scores well above them; see
# docs/segmentation.md). Run by ctest as
#   cmake -DATROUS=bin/atrous -DMODELS=models -DWORK=dir -DMIN_PA=.. -DMIN_MIOU=.. -P shipped_model_test.cmake
foreach(v ATROUS MODELS WORK MIN_PA MIN_MIOU)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "shipped_model_test.cmake needs -D${v}=...")
  endif()
endforeach()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(GLOB samples "${MODELS}/samples/*.png")
list(LENGTH samples n_samples)
if(n_samples LESS 1)
  message(FATAL_ERROR "no sample images in ${MODELS}/samples")
endif()

execute_process(COMMAND "${ATROUS}" run "${MODELS}/shapes_gcn.atrous" "${MODELS}/samples/" --output-dir "${WORK}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "atrous run: ${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "atrous run failed (exit ${rc})")
endif()

execute_process(COMMAND "${ATROUS}" eval --pred "${WORK}" --gt "${MODELS}/samples/labels" --num-classes 5
                        --class-names "${MODELS}/shapes_classes.txt" --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "atrous eval failed (exit ${rc}): ${err}")
endif()

string(JSON images GET "${json}" images)
string(JSON pa GET "${json}" pixel_accuracy)
string(JSON miou GET "${json}" mean_iou)
message(STATUS "${images} samples: pixel accuracy ${pa}, MIoU ${miou} (need >= ${MIN_PA}, >= ${MIN_MIOU})")
if(NOT images EQUAL n_samples)
  message(FATAL_ERROR "evaluated ${images} label maps, there are ${n_samples} samples")
endif()
if(pa LESS MIN_PA OR miou LESS MIN_MIOU)
  message(FATAL_ERROR "the shipped model scores too low on its samples: PA ${pa} (min ${MIN_PA}), MIoU ${miou} (min ${MIN_MIOU})\n${json}")
endif()
