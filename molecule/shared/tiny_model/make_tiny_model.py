#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Generate a TINY, randomly initialised CosyVoice3 model directory.

The directory has the same layout as the released Fun-CosyVoice3-0.5B model,
so upstream's ``cosyvoice.cli.cosyvoice.AutoModel(model_dir=DIR)`` loads it
unchanged and can synthesise (meaningless) audio on CPU in seconds:

    DIR/cosyvoice3.yaml            upstream's training config, sizes shrunk
    DIR/llm.pt                     state_dict of configs['llm']   (CosyVoice3LM)
    DIR/flow.pt                    state_dict of configs['flow']  (CausalMaskedDiffWithDiT)
    DIR/hift.pt                    state_dict of configs['hift']  (CausalHiFTGenerator)
    DIR/campplus.onnx              fbank [B, T, 80] -> speaker embedding [B, 192]
    DIR/speech_tokenizer_v3.onnx   whisper log-mel [1, 128, T] + int32 length [1]
                                   -> speech tokens [1, T // 4], values in [0, 6561)
    DIR/CosyVoice-BlankEN/         tiny Qwen2ForCausalLM + byte-level BPE tokenizer

Usage (with the venv that has upstream's requirements installed):

    python make_tiny_model.py --src /path/to/CosyVoice --out DIR

``--src`` is a CosyVoice checkout; it and ``src/third_party/Matcha-TTS`` are
put on sys.path (a ``matcha`` package already importable via PYTHONPATH is
used if the submodule directory is empty).

Nothing is downloaded: the tokenizer is trained offline on the small corpus
embedded below, and all weights are random (seeded, so reruns give the same
bytes for the same inputs and library versions).

Upstream quirks this script has to respect (read from upstream's code):

* ``CosyVoice3LM.inference`` hard-codes ``151646`` as the id of
  ``<|endofprompt|>`` (``assert 151646 in text``).  CosyVoice3Tokenizer gets
  that id only if the base tokenizer has exactly 151643 regular tokens
  followed by ``<|endoftext|>`` (151643), ``<|im_start|>`` (151644) and
  ``<|im_end|>`` (151645), as the real Qwen2 tokenizer has.  The `tokenizers`
  library ignores explicit ids of added tokens (it numbers them from the end
  of the model vocabulary), so the trained BPE vocabulary is padded with
  unreachable filler entries up to 151643.  Consequently the Qwen2 embedding
  has ~152k rows; with hidden size 64 that is ~9.7M parameters, which is what
  dominates the size of this "tiny" model.  The Qwen2 weights are therefore
  stored in bfloat16 by default (like the real Qwen2 checkpoints);
  ``--qwen-dtype float32`` doubles their size.
* The yaml seeds python/numpy/torch itself (``__set_seed*`` entries), so the
  modules it builds are deterministic; the yaml is kept as upstream's full
  training config (including the GAN discriminator, data pipeline and train
  confs), only sizes are changed, because it loads fine with the inference
  requirements.
"""

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys

import numpy as np
import torch

# ---------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------
SEED = 1986                 # same number upstream's yaml uses
QWEN_HIDDEN = 64            # == llm_input_size == llm_output_size in the yaml
QWEN_LAYERS = 2
QWEN_HEADS = 2
QWEN_KV_HEADS = 1
QWEN_INTERMEDIATE = 128
BPE_VOCAB_SIZE = 3000       # target size of the trained byte-level BPE
QWEN_REGULAR_VOCAB = 151643  # regular (non-added) tokens of the real Qwen2 tokenizer
QWEN_SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>']  # ids 151643..151645
ENDOFPROMPT_ID = 151646     # hard-coded in upstream cosyvoice/llm/llm.py
SPEECH_TOKEN_SIZE = 6561    # 3**8 FSQ codes of speech_tokenizer_v3
SPK_EMBED_DIM = 192
ONNX_OPSET = 17

# (yaml path, new value) edits applied to upstream's cosyvoice3.yaml.  Every
# path must occur exactly once; everything else is left as upstream wrote it.
YAML_EDITS = [
    (('llm_input_size',), '64'),
    (('llm_output_size',), '64'),
    (('flow', 'pre_lookahead_layer', 'channels'), '64'),
    (('flow', 'decoder', 'estimator', 'dim'), '64'),
    (('flow', 'decoder', 'estimator', 'depth'), '2'),
    (('flow', 'decoder', 'estimator', 'heads'), '2'),
    (('flow', 'decoder', 'estimator', 'dim_head'), '32'),
    (('hift', 'base_channels'), '32'),
    (('hift', 'f0_predictor', 'cond_channels'), '32'),
]

# ---------------------------------------------------------------------------
# Tokenizer training corpus (English + Chinese), embedded so that nothing has
# to be downloaded.  The BPE only needs to be plausible, not good.
# ---------------------------------------------------------------------------
EN_TEXT = """
Hello world, this is a test.
You are a helpful assistant.
Hello prompt text.
Hello again.
Hello there.
Please speak slowly and clearly.
The quick brown fox jumps over the lazy dog.
A journey of a thousand miles begins with a single step.
She sells sea shells by the sea shore.
How much wood would a woodchuck chuck if a woodchuck could chuck wood?
The weather today is sunny with a light breeze from the west.
I would like a cup of coffee with milk and no sugar, please.
Could you tell me the way to the nearest train station?
The meeting has been moved to Thursday afternoon at three o'clock.
We are going to the park this weekend if it does not rain.
My favourite colour is blue, but my sister prefers green.
Reading books is one of the best ways to learn new things.
The children were playing happily in the garden all morning.
Please remember to turn off the lights when you leave the room.
He opened the window and listened to the birds singing outside.
The library closes at eight in the evening on weekdays.
Text to speech systems convert written language into spoken audio.
Speech synthesis has improved dramatically over the last decade.
This voice was generated by a neural network.
The model reads the text and predicts a sequence of speech tokens.
A vocoder turns the mel spectrogram into a waveform.
Flow matching learns a vector field that transports noise to data.
Large language models can be used to generate speech tokens.
The speaker embedding captures the identity of the voice.
Zero shot voice cloning uses a short prompt recording.
Cross lingual synthesis speaks a new language with the same voice.
Instructions can control the emotion, speed and style of speech.
Speak in a happy voice.
Speak in a sad voice.
Please whisper the next sentence.
Say it as fast as you can.
Read this like a news anchor.
Tell me a story about a dragon and a brave knight.
Once upon a time there lived a king who had three daughters.
The museum is open from nine to five, except on Mondays.
Our flight departs at seven thirty and arrives just before noon.
The price of the ticket is twenty five dollars and fifty cents.
There are twelve months in a year and seven days in a week.
Mathematics is the language in which the universe is written.
Water boils at one hundred degrees Celsius at sea level.
The river flows slowly through the green valley.
Mountains covered in snow rose high above the little village.
Thank you very much for your help yesterday.
I am sorry, I did not understand the question.
Could you please repeat that one more time?
Good morning, everyone, and welcome to the show.
Good night and sweet dreams.
Let us begin with a short introduction.
The results of the experiment were quite surprising.
Scientists discovered a new species of frog in the rainforest.
Engineers are testing the software on many different machines.
Continuous integration runs the tests after every change.
This configuration file describes the model architecture.
The server responded with an error, so we tried again later.
Happy birthday! I hope all your wishes come true.
Don't forget to bring an umbrella; it might rain tonight.
It's a beautiful day, isn't it?
They've already finished their homework, haven't they?
We'll see what happens tomorrow.
I'd rather stay at home and watch a movie.
What time is it? It's half past ten.
Where are you from? I'm from a small town near the coast.
The cat sat on the mat and looked out of the window.
An apple a day keeps the doctor away.
Practice makes perfect.
Knowledge is power.
Time flies like an arrow; fruit flies like a banana.
Every cloud has a silver lining.
Actions speak louder than words.
The early bird catches the worm.
Better late than never.
Two wrongs don't make a right.
When in Rome, do as the Romans do.
Curiosity is the engine of achievement.
Artificial intelligence is changing the way we work and live.
Please call me back as soon as possible.
The package will be delivered on Monday morning.
Your order number is four eight one five one six two three four two.
The temperature will drop below zero tonight.
Turn left at the second traffic light, then go straight ahead.
Breakfast is served between seven and ten in the dining room.
The orchestra played a beautiful symphony last night.
She plays the piano and the violin very well.
He has been learning Chinese for three years.
Learning a new language takes patience and practice.
The teacher asked the students to open their books to page forty two.
Let me think about it and get back to you.
It was the best of times, it was the worst of times.
All happy families are alike; each unhappy family is unhappy in its own way.
It is a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife.
Call me Ishmael.
In the beginning was the word.
To be, or not to be, that is the question.
The only thing we have to fear is fear itself.
Ask not what your country can do for you.
I have a dream that one day this nation will rise up.
That's one small step for man, one giant leap for mankind.
Houston, we have a problem.
May the force be with you.
Elementary, my dear Watson.
Keep calm and carry on.
Numbers like 1, 2, 3, 10, 42, 100, 2024 and 3.14 appear in text.
Email me at someone@example.com or visit https://example.com/page.
Prices: $5, $12.50, 30% off, 1st, 2nd, 3rd and 4th place.
Dates such as 2024-01-15, 12/25 and 10:30 am are common.
"Quoted text", (parentheses), [brackets] and {braces} - all punctuation!
Yes. No. Maybe. Okay? Sure! Wow... Really?
"""

ZH_TEXT = """
你好，世界。
你好，这是一个测试。
你是一个有用的助手。
请慢一点说。
今天天气很好，阳光明媚。
我想喝一杯咖啡，不加糖。
请问最近的地铁站怎么走？
会议改到星期四下午三点。
如果周末不下雨，我们就去公园。
我最喜欢的颜色是蓝色。
读书是学习新知识的好方法。
孩子们整个上午都在花园里玩耍。
离开房间的时候请记得关灯。
他打开窗户，听着外面的鸟叫声。
图书馆工作日晚上八点关门。
语音合成技术在过去十年里进步很大。
这个声音是由神经网络生成的。
模型读取文本并预测语音标记序列。
声码器把梅尔频谱转换成波形。
说话人向量表示声音的身份特征。
零样本语音克隆只需要一段简短的提示录音。
跨语种合成可以用同一个声音说另一种语言。
指令可以控制语音的情感、语速和风格。
请用开心的语气说话。
请用悲伤的语气说话。
请小声地读下一句话。
请像新闻主播一样朗读。
给我讲一个关于龙和勇敢骑士的故事。
从前有一位国王，他有三个女儿。
博物馆每天九点到五点开放，周一闭馆。
我们的航班七点半起飞，中午前到达。
门票的价格是二十五元五角。
一年有十二个月，一个星期有七天。
水在海平面上一百摄氏度沸腾。
小河缓缓流过绿色的山谷。
白雪覆盖的高山耸立在小村庄的上方。
非常感谢你昨天的帮助。
对不起，我没有听懂这个问题。
请你再说一遍好吗？
大家早上好，欢迎收看本期节目。
晚安，祝你做个好梦。
我们先做一个简短的介绍。
实验结果令人非常惊讶。
科学家在热带雨林中发现了一种新的青蛙。
工程师正在很多不同的机器上测试软件。
这个配置文件描述了模型的结构。
服务器返回了错误，所以我们稍后又试了一次。
祝你生日快乐，心想事成。
别忘了带伞，今晚可能会下雨。
今天真是美好的一天，不是吗？
现在几点了？十点半了。
你是哪里人？我来自海边的一个小镇。
猫坐在垫子上望着窗外。
熟能生巧。
知识就是力量。
光阴似箭，日月如梭。
行动胜于言语。
早起的鸟儿有虫吃。
迟做总比不做好。
人工智能正在改变我们的工作和生活方式。
请尽快给我回电话。
包裹将在星期一上午送达。
今晚气温将降到零度以下。
在第二个红绿灯左转，然后一直往前走。
早餐在餐厅供应，时间是七点到十点。
昨晚乐团演奏了一首优美的交响曲。
她钢琴和小提琴都弹得很好。
他学习中文已经三年了。
学习一门新语言需要耐心和练习。
老师让学生们把书翻到第四十二页。
让我想一想，然后再回复你。
床前明月光，疑是地上霜。举头望明月，低头思故乡。
白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
千里之行，始于足下。
学而时习之，不亦说乎？
三人行，必有我师焉。
海内存知己，天涯若比邻。
北京是中国的首都，上海是最大的城市。
长城是世界上最著名的建筑之一。
中秋节的时候，家家户户都吃月饼。
春节是中国最重要的传统节日。
我们一起去吃火锅吧。
这家饭店的饺子特别好吃。
他每天早上六点起床跑步。
明天下午我们在学校门口见面。
电话号码是一三八零零一三八零零零。
这本书一共有三百二十页。
今年是二零二四年。
价格打了八折，只要九十九块钱。
请把音量调大一点。
这段录音的质量不太好。
收到请回复，谢谢！
"""


def corpus_lines():
    """A few hundred deterministic lines of English + Chinese training text."""
    en = [l for l in EN_TEXT.strip().splitlines() if l.strip()]
    zh = [l for l in ZH_TEXT.strip().splitlines() if l.strip()]
    lines = en + zh
    # Deterministic mixed-language and numeric lines, so that code-switching
    # and digits get some merges too.
    for i, (a, b) in enumerate(zip(en, zh)):
        lines.append('{} {}'.format(a, b))
        lines.append('{}：{} {}'.format(i, b, i * 37 % 1000))
    return lines


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def seed_everything(seed=SEED):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_sys_path(src):
    """Make upstream's `cosyvoice` and the Matcha-TTS `matcha` package importable."""
    src = os.path.abspath(src)
    matcha = os.path.join(src, 'third_party', 'Matcha-TTS')
    for p in (matcha, src):          # src ends up first
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        import matcha  # noqa: F401
    except ImportError:
        sys.exit('cannot import matcha: {} is empty (git submodule update --init?) '
                 'and no Matcha-TTS is on PYTHONPATH'.format(matcha))
    return src


def edit_yaml(text, edits):
    """Replace scalar values at YAML key paths, keeping everything else verbatim.

    Upstream's config uses hyperpyyaml tags (!new:, !ref, ...), which a
    round-trip YAML dumper would mangle, so values are edited line by line.
    A path is a tuple of mapping keys from the top level down; each one must
    be found exactly once and must hold a plain scalar on the same line.
    """
    lines = text.splitlines(keepends=True)
    hits = {path: [] for path, _ in edits}
    stack = []  # [(indent, key)] of the mapping keys enclosing the current line
    key_re = re.compile(r'^(\s*)([A-Za-z_][A-Za-z0-9_]*):(.*)$')
    for n, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        m = key_re.match(line.rstrip('\n'))
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = tuple(k for _, k in stack)
        if path in hits:
            hits[path].append(n)
    for path, value in edits:
        if len(hits[path]) != 1:
            raise SystemExit('yaml edit {}: expected exactly one match, found {}'.format(
                '.'.join(path), len(hits[path])))
        n = hits[path][0]
        m = re.match(r'^(\s*[A-Za-z_][A-Za-z0-9_]*:\s*)([^#\n]*?)(\s*(#.*)?)(\n?)$', lines[n])
        old = m.group(2)
        if not old or old.startswith('!'):
            raise SystemExit('yaml edit {}: {!r} is not a plain scalar'.format('.'.join(path), old))
        lines[n] = m.group(1) + value + m.group(3) + m.group(5)
    return ''.join(lines)


def cast_state_dict(sd, prefix, dtype):
    """Cast floating tensors whose key starts with `prefix`, keeping shared
    storages shared (Qwen2 ties lm_head.weight to embed_tokens.weight; both
    keys are in the state_dict and must stay one tensor in the file)."""
    out, memo = {}, {}
    for k, v in sd.items():
        if k.startswith(prefix) and v.is_floating_point() and v.dtype != dtype:
            key = (v.data_ptr(), v.dtype, tuple(v.shape), v.stride())
            if key not in memo:
                memo[key] = v.to(dtype)
            v = memo[key]
        out[k] = v
    return out


# ---------------------------------------------------------------------------
# 1. CosyVoice-BlankEN: tokenizer
# ---------------------------------------------------------------------------
# Qwen2's pre-tokenisation regex (the Split pattern of Qwen2's tokenizer.json).
QWEN2_SPLIT_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizer(blank_dir):
    from tokenizers import Tokenizer, Regex, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    # Byte-level BPE with the same normaliser / pre-tokeniser / decoder
    # pipeline as Qwen2's tokenizer.json.
    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_RE), behavior='isolated', invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    trained = tok.get_vocab_size()

    # Pad the regular vocabulary to 151643 entries (see module docstring), so
    # that the special tokens get the ids upstream hard-codes.  The filler
    # strings are never produced: byte-level BPE only emits single bytes and
    # the results of its merges, and no merge builds them.
    spec = json.loads(tok.to_str())
    vocab = spec['model']['vocab']
    n = 0
    while len(vocab) < QWEN_REGULAR_VOCAB:
        filler = '<|unused_{}|>'.format(n)
        n += 1
        if filler not in vocab:
            vocab[filler] = len(vocab)
    assert sorted(vocab.values()) == list(range(QWEN_REGULAR_VOCAB))
    spec['model']['ignore_merges'] = False  # fillers must never match as whole words
    tok = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    tok.add_special_tokens(QWEN_SPECIAL)
    for i, t in enumerate(QWEN_SPECIAL):
        assert tok.token_to_id(t) == QWEN_REGULAR_VOCAB + i, t

    # Wrap in transformers' Qwen2 tokenizer and save vocab.json, merges.txt,
    # tokenizer.json and tokenizer_config.json (tokenizer_class Qwen2Tokenizer),
    # with the same special-token settings as the Qwen2.5 base tokenizer.
    hf = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None,
                            eos_token='<|endoftext|>', pad_token='<|endoftext|>',
                            additional_special_tokens=['<|im_start|>', '<|im_end|>'],
                            errors='replace', clean_up_tokenization_spaces=False,
                            split_special_tokens=False, model_max_length=32768)
    hf.save_pretrained(blank_dir)
    # special_tokens_map.json is redundant with tokenizer_config.json; keep it
    # anyway, the real CosyVoice-BlankEN ships one too.
    return trained


def check_tokenizer(blank_dir):
    """Load the tokenizer the way upstream does and return the vocab size the
    Qwen2 embedding must cover."""
    from transformers import AutoTokenizer
    from cosyvoice.tokenizer.tokenizer import CosyVoice3Tokenizer

    fast = AutoTokenizer.from_pretrained(blank_dir)
    slow = AutoTokenizer.from_pretrained(blank_dir, use_fast=False)
    sample = 'Hello world, 你好世界! <|im_start|>x<|im_end|><|endoftext|>'
    assert fast(sample)['input_ids'] == slow(sample)['input_ids'], 'fast/slow tokenizers disagree'
    assert fast.decode(fast('Hello world, 你好世界!')['input_ids']) == 'Hello world, 你好世界!'

    cv = CosyVoice3Tokenizer(blank_dir)   # AutoTokenizer + add_special_tokens, as upstream
    ids = cv.encode('You are a helpful assistant.<|endofprompt|>Hello prompt text.')
    assert ENDOFPROMPT_ID in ids, ids
    assert cv.tokenizer.convert_tokens_to_ids('<|endofprompt|>') == ENDOFPROMPT_ID
    n = len(cv.tokenizer)                                  # regular + all added tokens
    top = max(cv.tokenizer.get_vocab().values()) + 1
    return max(n, top), ids


# ---------------------------------------------------------------------------
# 2. CosyVoice-BlankEN: tiny Qwen2 model
# ---------------------------------------------------------------------------
def build_qwen(blank_dir, trained_vocab, needed_vocab, store_dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    vocab_size = (needed_vocab + 63) // 64 * 64   # round up like Qwen's 151936
    cfg = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=QWEN_HIDDEN,
        intermediate_size=QWEN_INTERMEDIATE,
        num_hidden_layers=QWEN_LAYERS,
        num_attention_heads=QWEN_HEADS,
        num_key_value_heads=QWEN_KV_HEADS,
        hidden_act='silu',
        max_position_embeddings=32768,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        use_cache=True,
        tie_word_embeddings=True,       # as Qwen2.5-0.5B; halves the size
        rope_theta=1000000.0,
        use_sliding_window=False,
        sliding_window=None,            # real Qwen2.5 has 32768 here, which only makes
                                        # transformers warn 'Sliding Window Attention is enabled'
        max_window_layers=QWEN_LAYERS,
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151643,
        architectures=['Qwen2ForCausalLM'],
    )
    seed_everything()
    model = Qwen2ForCausalLM(cfg).eval()    # transformers' own random init
    # Zero the embedding rows of ids no tokenizer call can produce (the filler
    # vocabulary and the round-up slack).  Inference never reads them, and
    # all-zero rows make the model compress to a fraction of its size
    # (tar/zip), which matters because these rows are ~97% of the parameters.
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[trained_vocab:QWEN_REGULAR_VOCAB].zero_()
        emb[needed_vocab:].zero_()
    # Store (and thereby round) the weights in `store_dtype`; from_pretrained
    # upcasts them to float32 when upstream loads the model.
    model.to(store_dtype)
    model.save_pretrained(blank_dir, safe_serialization=True)
    return vocab_size


# ---------------------------------------------------------------------------
# 3. ONNX front-end models
# ---------------------------------------------------------------------------
class TinyCampPlus(torch.nn.Module):
    """Stand-in for CAM++: mean-normalised kaldi fbank [B, T, 80] -> [B, 192]."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(80, SPK_EMBED_DIM)

    def forward(self, feats):
        return self.proj(feats.mean(dim=1) + feats.std(dim=1))


class TinySpeechTokenizer(torch.nn.Module):
    """Stand-in for speech_tokenizer_v3: whisper log-mel [1, 128, T] at 100 Hz
    plus its length -> FSQ-style tokens at 25 Hz.

    A stride-4 conv projects to 8 channels, each is quantised to {0, 1, 2}
    and the 8 base-3 digits form the token: 3**8 == 6561 possible ids,
    exactly the range upstream expects."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(128, 8, kernel_size=4, stride=4)
        self.register_buffer('powers', torch.tensor([3 ** i for i in range(8)], dtype=torch.float32).view(1, 8, 1))

    def forward(self, feats, feats_length):
        digits = torch.round(torch.tanh(self.conv(feats) * 4.0)) + 1.0      # [1, 8, T//4] in {0,1,2}
        tokens = (digits * self.powers).sum(dim=1)                          # [1, T//4] in [0, 6560]
        n = (feats_length.to(torch.int64) // 4).reshape(1)                  # honour the length input
        return tokens[:, :n[0]].to(torch.int32)


def export_onnx(module, args, path, input_names, output_names, dynamic_axes):
    seed_everything()
    module.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, do_constant_folding=True)
    with open(path, 'wb') as f:
        f.write(buf.getvalue())


def build_onnx(out):
    import onnx
    import onnxruntime

    seed_everything()
    camp = TinyCampPlus()
    export_onnx(camp, (torch.randn(1, 200, 80),), os.path.join(out, 'campplus.onnx'),
                ['input'], ['output'], {'input': {0: 'B', 1: 'T'}, 'output': {0: 'B'}})
    seed_everything()
    stok = TinySpeechTokenizer()
    export_onnx(stok, (torch.randn(1, 128, 300), torch.tensor([300], dtype=torch.int32)),
                os.path.join(out, 'speech_tokenizer_v3.onnx'),
                ['feats', 'feats_length'], ['indices'], {'feats': {2: 'T'}, 'indices': {1: 'T4'}})

    # Sanity check with onnxruntime, calling it the way cosyvoice/cli/frontend.py does.
    for name in ('campplus.onnx', 'speech_tokenizer_v3.onnx'):
        onnx.checker.check_model(onnx.load(os.path.join(out, name)))
    rng = np.random.default_rng(0)
    s = onnxruntime.InferenceSession(os.path.join(out, 'campplus.onnx'), providers=['CPUExecutionProvider'])
    for t in (37, 251):
        emb = s.run(None, {s.get_inputs()[0].name: rng.standard_normal((1, t, 80)).astype(np.float32)})[0]
        assert emb.shape == (1, SPK_EMBED_DIM), emb.shape
    s = onnxruntime.InferenceSession(os.path.join(out, 'speech_tokenizer_v3.onnx'), providers=['CPUExecutionProvider'])
    for t in (83, 256, 1000):
        mel = rng.standard_normal((1, 128, t)).astype(np.float32)
        tok = s.run(None, {s.get_inputs()[0].name: mel,
                           s.get_inputs()[1].name: np.array([t], dtype=np.int32)})[0]
        assert tok.shape == (1, t // 4) and tok.min() >= 0 and tok.max() < SPEECH_TOKEN_SIZE, (tok.shape, tok.min(), tok.max())


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--src', required=True, help='CosyVoice checkout (with third_party/Matcha-TTS)')
    ap.add_argument('--out', required=True, help='model directory to create')
    ap.add_argument('--qwen-dtype', choices=['bfloat16', 'float32'], default='bfloat16',
                    help='storage dtype of the Qwen2 weights in model.safetensors and llm.pt '
                         '(upstream upcasts to float32 on load); default bfloat16')
    ap.add_argument('--llm-stop', choices=['max_len', 'random'], default='max_len',
                    help="max_len (default): the random LLM never emits a stop token, so it always "
                         "generates upstream's maximum of 20 speech tokens per text token; "
                         "random: keep upstream's init (stops at random, possibly after 0 tokens)")
    ap.add_argument('--force', action='store_true', help='replace --out if it exists')
    args = ap.parse_args()

    src = setup_sys_path(args.src)
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        if not args.force and os.listdir(out):
            sys.exit('{} exists and is not empty (use --force)'.format(out))
        shutil.rmtree(out)
    os.makedirs(out)
    blank_dir = os.path.join(out, 'CosyVoice-BlankEN')
    os.makedirs(blank_dir)
    store_dtype = getattr(torch, args.qwen_dtype)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    from hyperpyyaml import load_hyperpyyaml
    from cosyvoice.cli.model import CosyVoice3Model
    from cosyvoice.utils.class_utils import get_model_type

    # 1+2. CosyVoice-BlankEN (tokenizer first: the model's vocab depends on it)
    trained = build_tokenizer(blank_dir)
    needed_vocab, sample_ids = check_tokenizer(blank_dir)
    vocab_size = build_qwen(blank_dir, trained, needed_vocab, store_dtype)
    print('tokenizer: {} trained BPE tokens, padded to {}; CosyVoice3Tokenizer needs {} ids; '
          'Qwen2 vocab_size {}'.format(trained, QWEN_REGULAR_VOCAB, needed_vocab, vocab_size))
    print('  CosyVoice3Tokenizer ids of a sample prompt: {}'.format(sample_ids))

    # 3. cosyvoice3.yaml: upstream's training config with sizes shrunk.
    yaml_src = os.path.join(src, 'examples', 'libritts', 'cosyvoice3', 'conf', 'cosyvoice3.yaml')
    with open(yaml_src, encoding='utf-8') as f:
        text = f.read()
    header = ('# TINY RANDOM TEST MODEL generated by make_tiny_model.py from\n'
              '# examples/libritts/cosyvoice3/conf/cosyvoice3.yaml (sha256 {}); only sizes differ:\n'
              '#   {}\n'
              '# The weights are random: the audio it produces is noise.\n').format(
        hashlib.sha256(text.encode('utf-8')).hexdigest()[:16],
        ', '.join('{}={}'.format('.'.join(p), v) for p, v in YAML_EDITS))
    text = header + edit_yaml(text, YAML_EDITS)
    yaml_out = os.path.join(out, 'cosyvoice3.yaml')
    with open(yaml_out, 'w', encoding='utf-8') as f:
        f.write(text)

    # 4. Instantiate the modules exactly as CosyVoice3.__init__ does (same
    #    override), so the state_dicts match what its strict load expects.
    #    The yaml seeds the RNGs itself, and Qwen2Encoder loads BlankEN.
    with open(yaml_out, encoding='utf-8') as f:
        configs = load_hyperpyyaml(f, overrides={'qwen_pretrain_path': blank_dir})
    assert get_model_type(configs) == CosyVoice3Model
    for key in ('llm', 'flow', 'hift', 'get_tokenizer', 'feat_extractor', 'allowed_special', 'sample_rate'):
        assert key in configs, key
    assert configs['sample_rate'] == 24000
    qwen_emb = configs['llm'].llm.model.model.embed_tokens
    assert qwen_emb.num_embeddings >= needed_vocab and qwen_emb.embedding_dim == configs['llm'].llm_input_size

    llm = configs['llm']
    if args.llm_stop == 'max_len':
        # llm_decoder rows 6561..6760 score the 200 non-speech ids (sos, eos,
        # task_id, fill and reserved ones), all of which are stop tokens for
        # CosyVoice3LM.inference.  With upstream's random init each step picks
        # one of them with ~3% probability, so a random model may stop after
        # 0 tokens (empty audio) for some inputs.  Zeroing the rows keeps them
        # out of the top-k nucleus, so generation runs to upstream's bound
        # max_len = 20 * (number of tts text tokens): never empty, and the
        # length is predictable.
        with torch.no_grad():
            llm.llm_decoder.weight[llm.speech_token_size:].zero_()
    llm_sd = cast_state_dict(llm.state_dict(), 'llm.model.', store_dtype)
    torch.save(llm_sd, os.path.join(out, 'llm.pt'))
    torch.save(configs['flow'].state_dict(), os.path.join(out, 'flow.pt'))
    torch.save(configs['hift'].state_dict(), os.path.join(out, 'hift.pt'))
    nparams = {k: sum(p.numel() for p in configs[k].parameters()) for k in ('llm', 'flow', 'hift')}
    del configs

    # 5. ONNX front-end models.
    build_onnx(out)

    # 6. Report.
    print('parameters: ' + ', '.join('{} {:,}'.format(k, v) for k, v in nparams.items()))
    print('wrote {}:'.format(out))
    total = 0
    for root, dirs, files in os.walk(out):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            size = os.path.getsize(p)
            total += size
            print('  {:>12,}  {}'.format(size, os.path.relpath(p, out)))
    print('  {:>12,}  total ({:.1f} MiB)'.format(total, total / 2 ** 20))


if __name__ == '__main__':
    main()
