#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes a tiny BERT-shaped model that Transformers.js runs, byte for byte the same every time.

Usage: python3 generate.py OUT_DIR   (needs the PyPI packages `onnx` and `numpy`)

OUT_DIR gets `config.json`, `tokenizer.json` (WordPiece), `tokenizer_config.json` and
`onnx/model.onnx` (a few KB). One graph serves two pipelines: it outputs `last_hidden_state`
(what `feature-extraction` reads, through `BertModel`) and `logits` (what `text-classification`
reads, through `BertForSequenceClassification`), so one repository is enough for both. Weights
come from a seeded generator; nothing is trained, the outputs are only meant to be compared
between runs and sites.
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HIDDEN = 16
LABELS = ["NEGATIVE", "POSITIVE"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "a", "an", "the", "is", "was", "it", "this", "that", "i", "you", "we", "and", "but", "not",
    "very", "so", "good", "great", "fine", "bad", "awful", "poor", "love", "like", "hate",
    "movie", "film", "book", "day", "model", "cat", "dog", "hello", "world", "storage",
    "cross", "origin", "shared", "once", "##s", "##ed", "##ing", "##ly", ".", ",", "!", "?", "-",
]


def graph(vocab_size: int) -> onnx.ModelProto:
    rng = np.random.default_rng(20261203)
    embeddings = rng.normal(0.0, 1.0, (vocab_size, HIDDEN)).astype(np.float32)
    dense = (rng.normal(0.0, 1.0, (HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    classifier = rng.normal(0.0, 1.0, (HIDDEN, len(LABELS))).astype(np.float32)
    node = helper.make_node
    nodes = [
        # Token embeddings, one dense layer, tanh: [batch, seq, hidden].
        node("Gather", ["embeddings", "input_ids"], ["embedded"], axis=0),
        node("MatMul", ["embedded", "dense"], ["projected"]),
        node("Tanh", ["projected"], ["activated"]),
        # Padding positions are zeroed by the attention mask.
        node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["mask_float", "last_axis"], ["mask3"]),
        node("Mul", ["activated", "mask3"], ["last_hidden_state"]),
        # Masked mean over the sequence, then the classifier: [batch, labels].
        node("ReduceSum", ["last_hidden_state", "seq_axis"], ["summed"], keepdims=0),
        node("ReduceSum", ["mask_float", "seq_axis"], ["count"], keepdims=1),
        node("Max", ["count", "one"], ["count_safe"]),
        node("Div", ["summed", "count_safe"], ["pooled"]),
        node("MatMul", ["pooled", "classifier"], ["logits"]),
    ]
    initializers = [
        numpy_helper.from_array(embeddings, "embeddings"),
        numpy_helper.from_array(dense, "dense"),
        numpy_helper.from_array(classifier, "classifier"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
        numpy_helper.from_array(np.array([1], np.int64), "seq_axis"),
        numpy_helper.from_array(np.array([1.0], np.float32), "one"),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", HIDDEN]),
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny_bert", inputs, outputs, initializers),
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="cos-test-shell",
        producer_version="1",
    )
    # IR 8 is what onnxruntime-web builds of 2025-2026 all load.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def tokenizer(vocab: dict) -> dict:
    def special(token: str) -> dict:
        return {"id": vocab[token], "content": token, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [special(t) for t in SPECIAL],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "onnx"), exist_ok=True)
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    config = {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "hidden_size": HIDDEN,
        "num_attention_heads": 1,
        "num_hidden_layers": 1,
        "intermediate_size": HIDDEN,
        "vocab_size": len(vocab),
        "max_position_embeddings": 128,
        "type_vocab_size": 2,
        "id2label": {str(i): label for i, label in enumerate(LABELS)},
        "label2id": {label: i for i, label in enumerate(LABELS)},
    }
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 128,
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    }
    write_json(os.path.join(out, "config.json"), config)
    write_json(os.path.join(out, "tokenizer.json"), tokenizer(vocab))
    write_json(os.path.join(out, "tokenizer_config.json"), tokenizer_config)
    with open(os.path.join(out, "onnx", "model.onnx"), "wb") as f:
        f.write(graph(len(vocab)).SerializeToString(deterministic=True))


if __name__ == "__main__":
    main()
