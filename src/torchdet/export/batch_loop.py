"""Free batch size for an exported detector: an ONNX ``Loop`` over the images of the batch.

The models are traced on one image; their post-processing (score threshold, NMS, top-k)
keeps a data-dependent number of boxes per image, so a trace at batch size ``B`` unrolls
``B`` copies of it. Instead, ``loop_over_batch`` takes the one-image graph (input
``[1, 3, H, W]``, outputs with a leading axis of 1) and wraps it in a ``Loop`` whose trip
count is the input's batch size: iteration ``i`` slices image ``i``, runs the one-image
graph, and emits each output without its leading axis; ``Loop`` stacks the per-image
outputs into ``[B, ...]``. The body refers to the weights in the outer graph, so they are
stored once.
"""
from __future__ import annotations

from typing import Dict, List

__all__ = ["loop_over_batch"]

_PREFIX = "per_image/"


def _renamed(name: str, keep: Dict[str, str]) -> str:
    if not name:
        return name  # an omitted optional input
    return keep.get(name, _PREFIX + name)


def loop_over_batch(model: "onnx.ModelProto", input_name: str = "images") -> "onnx.ModelProto":  # noqa: F821
    """``model`` (input ``input_name`` ``[1, C, H, W]``) -> the same model with a free batch axis.

    Every output ``[1, *S]`` of ``model`` becomes ``[B, *S]``; ``B`` is the first axis of the
    new input ``input_name`` ``[B, C, H, W]``.
    """
    import onnx
    from onnx import TensorProto, helper

    inner = model.graph
    if len(inner.input) != 1 or inner.input[0].name != input_name:
        names = [i.name for i in inner.input]
        raise ValueError(f"expected a graph with the single input {input_name!r}, got {names}")

    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for node in inner.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise ValueError(f"the one-image graph has a control-flow node ({node.op_type}); it cannot be looped")

    def squeeze0(x: str, out: str) -> onnx.NodeProto:
        if opset >= 13:
            return helper.make_node("Squeeze", [x, "batch/axis0"], [out])
        return helper.make_node("Squeeze", [x], [out], axes=[0])

    outer_nodes: List[onnx.NodeProto] = [
        helper.make_node("Shape", [input_name], ["batch/shape"]),
        helper.make_node("Gather", ["batch/shape", "batch/zero"], ["batch/size"], axis=0),  # int64 scalar
    ]
    outer_constants = [helper.make_tensor("batch/zero", TensorProto.INT64, [], [0])]
    if opset >= 13:
        outer_constants.append(helper.make_tensor("batch/axis0", TensorProto.INT64, [1], [0]))

    # The body: (iteration, condition) -> (condition, one scan output per model output).
    iteration, cond_in, cond_out = "batch/i", "batch/cond_in", "batch/cond_out"
    image = _PREFIX + input_name
    body_nodes = [
        helper.make_node("Identity", [cond_in], [cond_out]),
        helper.make_node("Reshape", [iteration, "batch/shape1"], ["batch/start"]),
        helper.make_node("Add", ["batch/start", "batch/one"], ["batch/end"]),
        helper.make_node("Slice", [input_name, "batch/start", "batch/end", "batch/slice_axis"], [image]),
    ]
    constants = [
        helper.make_tensor("batch/shape1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("batch/one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("batch/slice_axis", TensorProto.INT64, [1], [0]),
    ]
    keep = {input_name: image}
    for initializer in inner.initializer:
        keep[initializer.name] = initializer.name  # weights stay in the outer graph, under their names
    for node in inner.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(_renamed(n, keep) for n in node.input)
        del copy.output[:]
        copy.output.extend(_renamed(n, keep) for n in node.output)
        if copy.name:
            copy.name = _PREFIX + copy.name
        body_nodes.append(copy)

    body_outputs = [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, [])]
    outer_outputs = []
    for output in inner.output:
        per_image = _PREFIX + output.name + "/squeezed"
        body_nodes.append(squeeze0(_renamed(output.name, keep), per_image))
        elem_type = output.type.tensor_type.elem_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None)
                for d in output.type.tensor_type.shape.dim]
        body_outputs.append(helper.make_tensor_value_info(per_image, elem_type, dims[1:] if dims else None))
        outer_outputs.append(helper.make_tensor_value_info(output.name, elem_type, ["batch"] + dims[1:]))

    body = helper.make_graph(
        body_nodes, "per_image",
        inputs=[helper.make_tensor_value_info(iteration, TensorProto.INT64, []),
                helper.make_tensor_value_info(cond_in, TensorProto.BOOL, [])],
        outputs=body_outputs,
        initializer=constants,
    )
    outer_nodes.append(helper.make_node("Loop", ["batch/size", ""], [o.name for o in inner.output], body=body))

    image_type = inner.input[0].type.tensor_type
    image_dims = [d.dim_param or d.dim_value for d in image_type.shape.dim]
    graph = helper.make_graph(
        outer_nodes, inner.name or "detector",
        inputs=[helper.make_tensor_value_info(input_name, image_type.elem_type, ["batch"] + image_dims[1:])],
        outputs=outer_outputs,
        initializer=list(inner.initializer) + outer_constants,
    )
    result = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="torchdet")
    result.ir_version = model.ir_version
    onnx.checker.check_model(result)
    return result
