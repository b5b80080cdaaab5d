"""The Ascend guide's fixed facts that the code, its schemas and its checks repeat, each written
once here (docs and error messages still quote the values; ``/work/shared/reference/RECIPE.md``).

Imports nothing, so that ``conf_schemas`` can use it without making config loading heavy.
"""

#: frames every utterance is padded to in the recipe (its static [B, 390, 243] ONNX and OM;
#: ``infer.batching=fixed``'s default ``pad_to``, ``export.frames``, ``backend.atc.frames``)
RECIPE_FRAMES = 390
#: the ONNX (and OM) input's name, as the recipe's export writes it
ONNX_INPUT_NAME = "actual_input_1"
#: the ONNX (and OM) output's name
ONNX_OUTPUT_NAME = "output1"
