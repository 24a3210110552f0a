"""Names and ids shared by every part of the phantom: materials, levels, discs, sides, label and structure ids."""

from __future__ import annotations

#: Materials in id order (the column order of path-length tables); HU values come from the recipe.
MATERIALS: tuple[str, ...] = (
    "air", "fat", "soft_tissue", "muscle", "csf", "joint_space", "disc", "cancellous", "cortical", "bowel_gas",
)
LUMBAR_LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")
#: VerSe vertebra ids of the label map; the ilia are not vertebrae and stay 0 there.
VERTEBRA_LABELS: dict[str, int] = {"L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24, "S1": 26}
DISC_NAMES: tuple[str, ...] = ("L1_L2", "L2_L3", "L3_L4", "L4_L5", "L5_S1")
#: Ids of the structure map (0 is air outside the body).
STRUCTURE_IDS: dict[str, int] = {
    "background": 0,
    "subcutaneous_fat": 1, "soft_tissue": 2, "paraspinal_muscle_left": 3, "paraspinal_muscle_right": 4,
    "psoas_left": 5, "psoas_right": 6, "bowel_gas": 7,
    "vertebral_body": 10, "pedicle_left": 11, "pedicle_right": 12, "lamina_left": 13, "lamina_right": 14,
    "spinous_process": 15, "transverse_process_left": 16, "transverse_process_right": 17,
    "sap_left": 18, "sap_right": 19, "iap_left": 20, "iap_right": 21,
    "canal": 30, "foramen_left": 31, "foramen_right": 32,
    **{f"disc_{name}": 41 + index for index, name in enumerate(DISC_NAMES)},
    "sacrum": 50, "sacral_ala_left": 51, "sacral_ala_right": 52, "s1_foramen_left": 53, "s1_foramen_right": 54,
    "ilium_left": 60, "ilium_right": 61, "si_joint_left": 62, "si_joint_right": 63,
}
SIDES: dict[str, int] = {"left": 1, "right": -1}
