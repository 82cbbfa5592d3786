"""The Mobile family: the served model converted to LiteRT, run as MLCommons' Mobile app runs its tasks.

    convert    the SavedModel as fp32 and full-integer int8 ``.tflite`` (mobile.convert)
    run        one app task (tasks.pbtxt) through LoadGen on LiteRT, in a run mode (mobile.run)
    result     the runs of a target as the app's extended result JSON (mobile.result)

The app's own files (tasks.pbtxt, its proto, the result schema) are read through the gateway,
``benchpipe.mlcommons.mobile_app``.
"""
