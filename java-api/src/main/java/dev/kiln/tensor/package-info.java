/**
 * Off-heap tensors: {@link dev.kiln.tensor.Tensor} (native memory viewed from Java without
 * copies), {@link dev.kiln.tensor.DType}, {@link dev.kiln.tensor.Device}, native
 * {@link dev.kiln.tensor.Ops}, and {@link dev.kiln.tensor.TensorScope} for closing many at once.
 */
package dev.kiln.tensor;
